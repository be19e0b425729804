"""Exact resume: a run SIGKILLed after checkpoint N and resumed to 2N equals an uninterrupted 2N run, bitwise."""
import torch

from data import write_synthetic_shards
from training import TokenizerTrainer
from conftest import reset_accelerate_state
from train_utils import assert_bitwise_equal, kill_after_checkpoint_and_resume, tiny_config, write_yaml

N = 3  # the GAN starts at step 3, so the resumed half trains generator, discriminator and LeCAM



def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def test_sigkill_and_resume_reaches_the_same_parameters(tmp_path):
    shards = write_synthetic_shards(str(tmp_path / "shards"), num_train=64, num_val=4, resolution=16, seed=0)
    overrides = dict(experiment={"save_every": N, "eval_every": 100, "generate_every": 100, "log_every": 2},
                     training={"max_train_steps": 2 * N})
    straight = tmp_path / "straight"
    TokenizerTrainer(tiny_config(shards, straight, **overrides)).train()
    reset_accelerate_state()

    killed = tmp_path / "killed"
    config_path = write_yaml(tiny_config(shards, killed, **overrides), tmp_path / "cfg.yaml")
    kill_after_checkpoint_and_resume(config_path, killed, N, 2 * N)

    a, b = straight / f"checkpoint-{2 * N}", killed / f"checkpoint-{2 * N}"
    for name in ("unwrapped_model/pytorch_model.bin", "ema_model/pytorch_model.bin", "training_state.pt"):
        assert_bitwise_equal(load(a / name), load(b / name), name)
    assert_bitwise_equal(load(straight / "pytorch_model.bin"), load(killed / "pytorch_model.bin"), "export")
