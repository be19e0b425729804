"""MaskGIT-pytorch v1 / Halton-MaskGIT v2 training (training/maskgit_pytorch_trainer.py) on reduced models: 16 px
synthetic images, a tiny VQGAN of the version (4x4 grid of 16 codes), 2-layer transformers of width 32."""
import math
import shutil

import numpy as np
import pytest
import torch

from conftest import reset_accelerate_state
from data import write_synthetic_shards
from helpers_generator_training import load, make_token_folder
from modeling import build_generator, build_tokenizer
from modeling.maskgit_pytorch import mask_code
from modeling.registry import preset_config
from train_utils import assert_bitwise_equal, kill_after_checkpoint_and_resume
from training import trainer_class
from training.maskgit_pytorch_trainer import MaskGITPytorchLoss, MaskGITPytorchTrainer
from utils.config import save_config
from utils.run_layout import read_metrics

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")

PRESETS = {"v1": "maskgit_pytorch_v1_base_256", "v2": "maskgit_pytorch_v2_tiny_256"}
REDUCED = {"hidden_dim": 32, "depth": 2, "heads": 2, "mlp_dim": 64, "nclass": 10,
           "model.vq_model.codebook_size": 16, "model.vq_model.hidden_channels": 32,
           "model.vq_model.channel_mult": [1, 2, 2], "model.vq_model.num_res_blocks": 1,
           "dataset.preprocessing.resolution": 16, "dataset.params.num_workers_per_gpu": 0,
           "dataset.params.shuffle_buffer_size": 8, "dataset.params.pretokenize_num_views": 1,
           "dataset.preprocessing.resize_shorter_edge": 16,
           "experiment.eval_every": 100_000, "experiment.generate_every": 100_000, "experiment.keep_last": 0,
           "training.per_gpu_batch_size": 8, "training.mixed_precision": "no", "lr_scheduler.params.warmup_steps": 2,
           "sample.classes": [0, 3]}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("maskgit_pytorch_data")
    shards = write_synthetic_shards(str(root / "shards"), num_train=8, num_val=2, resolution=16, seed=0)
    for version, name in PRESETS.items():
        torch.manual_seed(0)
        vqgan = build_tokenizer(preset_config(name, REDUCED))
        with torch.no_grad():  # spread the codes over the codebook
            vqgan.quantize.embedding.weight.normal_()
        torch.save(vqgan.state_dict(), root / f"vq_{version}.bin")
    return {"root": root, "shards": shards}


def config(data, version, output_dir, tokens="", **extra):
    return preset_config(PRESETS[version], {
        **REDUCED, "experiment.output_dir": str(output_dir),
        "experiment.vqgan_checkpoint": str(data["root"] / f"vq_{version}.bin"),
        "dataset.params.train_shards_path_or_url": data["shards"]["train"],
        "dataset.params.pretokenized_shards_path_or_url": str(tokens), **extra})


def test_loss_is_the_mean_cross_entropy_over_all_positions():
    torch.manual_seed(0)
    logits, targets = torch.randn(2, 5, 7), torch.randint(0, 7, (2, 5))
    mask = torch.rand(2, 5) < 0.5
    loss, logs = MaskGITPytorchLoss(0.1)(logits, targets, mask)
    logp = torch.log_softmax(logits.double(), -1)
    nll = -logp.gather(-1, targets[..., None])[..., 0]
    expected = (0.9 * nll - 0.1 / 7 * logp.sum(-1)).mean()  # unmasked positions count too (facts §12.10)
    assert torch.allclose(loss.double(), expected, rtol=1e-6)
    hits = ((logits.argmax(-1) == targets) & mask).sum() / mask.sum()
    assert logs["masked_accuracy"].item() == pytest.approx(hits.item())


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_a_few_hundred_steps_lower_the_loss(data, tmp_path, version):
    """The official recipe of each version (masking, label dropout, smoothing, AdamW) on pretokenized codes."""
    tokens = tmp_path / "tokens"
    make_token_folder(config(data, version, tmp_path / "unused", tokens))
    run = tmp_path / "run"
    cfg = config(data, version, run, tokens, **{
        "dropout": 0.0, "training.max_train_steps": 200, "experiment.save_every": 200, "experiment.log_every": 20,
        "experiment.generate_every": 200, "sample.per_class": 2, "optimizer.params.learning_rate": 3e-3})
    assert trainer_class("generator", cfg) is MaskGITPytorchTrainer
    trainer = MaskGITPytorchTrainer(cfg)
    assert trainer.token_shards is not None
    optimizer = trainer.optimizers["generator"]
    official = {"v1": (0.96, 1e-5), "v2": (0.999, 0.03)}[version]  # AdamW betas[1], weight decay, one group
    assert len(optimizer.param_groups) == 1
    assert (optimizer.param_groups[0]["betas"][1], optimizer.param_groups[0]["weight_decay"]) == official
    trainer.train()
    losses = [r["train/loss"] for r in read_metrics(run / "metrics.jsonl") if "train/loss" in r]
    assert len(losses) == 10 and all(np.isfinite(losses))
    # mean of steps 1-20 (from ln 17 ~ 2.83, uniform over 16 codes + the mask id) vs steps 181-200: the codes of 8
    # images are learnable (v1's floor is the label-smoothing entropy, ~0.57 here)
    assert losses[0] > 1.0 and losses[-1] < 0.6 * losses[0], losses
    generator = build_generator(cfg)
    generator.load_state_dict(load(run / "pytorch_model.bin"), strict=True)
    assert (run / "train_generated_images" / "00000200.png").is_file()  # the family's sampler, official settings


def test_masking_and_label_dropout_follow_the_config(data, tmp_path):
    """v1 noise models: masked tokens become uniform random codes; the draws are the trainer's seeded ones."""
    cfg = config(data, "v1", tmp_path, **{"mask_value": -1, "drop_label": 0.5, "training.max_train_steps": 1})
    trainer = MaskGITPytorchTrainer(cfg)
    code = torch.randint(0, 16, (64, 4, 4))
    drop, r, u, random_codes = trainer.masking_draws(code)
    assert 16 < drop.sum() < 48 and random_codes.shape == code.shape and 0 <= random_codes.min()
    masked, mask = mask_code(code, version="v1", mode="arccos", value=-1, r=r, u=u, random_codes=random_codes)
    assert torch.equal(masked[mask], random_codes[mask]) and (masked < 16).all()
    again = MaskGITPytorchTrainer(cfg).masking_draws(code)
    assert all(torch.equal(a, b) for a, b in zip((drop, r, u, random_codes), again))  # seeded per micro-batch
    reset_accelerate_state()
    with pytest.raises(Exception, match="exists only in v1"):
        MaskGITPytorchTrainer(config(data, "v2", tmp_path / "v2", **{"mask_value": -1}))


def test_resume_is_bitwise(data, tmp_path):
    """4 straight steps == the straight run's step-2 checkpoint resumed to step 4 (v2, dropout on, on-the-fly codes,
    the official schedule with its cosine tail inside the 4 steps)."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    extra = {"training.max_train_steps": 4, "experiment.save_every": 2}
    MaskGITPytorchTrainer(config(data, "v2", straight, **extra)).train()
    reset_accelerate_state()
    resumed.mkdir()
    shutil.copytree(straight / "checkpoint-2", resumed / "checkpoint-2")
    trainer = MaskGITPytorchTrainer(config(data, "v2", resumed, **extra))
    trainer.train()
    assert trainer._batch_number == 4
    for name in ("unwrapped_model/pytorch_model.bin", "training_state.pt"):
        assert_bitwise_equal(load(straight / "checkpoint-4" / name), load(resumed / "checkpoint-4" / name), name)
    first = load(straight / "checkpoint-2" / "unwrapped_model" / "pytorch_model.bin")
    assert any(not torch.equal(first[k], v) for k, v in load(straight / "pytorch_model.bin").items())


def test_sigkill_and_resume_through_the_script_is_bitwise(data, tmp_path):
    """scripts/train_maskbit.py on a v1 config (on-the-fly codes, dropout), SIGKILLed after checkpoint 2 and run
    again, ends equal to an uninterrupted run."""
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    extra = {"training.max_train_steps": 4, "experiment.save_every": 2}
    MaskGITPytorchTrainer(config(data, "v1", straight, **extra)).train()
    save_config(config(data, "v1", killed, **extra), tmp_path / "cfg.yaml")
    kill_after_checkpoint_and_resume(tmp_path / "cfg.yaml", killed, 2, 4, script="train_maskbit.py")
    for name in ("unwrapped_model/pytorch_model.bin", "training_state.pt"):
        assert_bitwise_equal(load(straight / "checkpoint-4" / name), load(killed / "checkpoint-4" / name), name)
    assert_bitwise_equal(load(straight / "pytorch_model.bin"), load(killed / "pytorch_model.bin"), "export")


def test_halton_lr_schedule_warm_up_constant_cosine_tail():
    from training.lr_schedule import lr_multiplier_fn
    lr = lr_multiplier_fn("constant_cosine_tail", 2500, 100_000, min_lr_ratio=0.01)  # v2 configs (facts §5.2)
    assert [lr(s) for s in (0, 1250, 2500, 89_999, 90_000)] == [0.0, 0.5, 1.0, 1.0, 1.0]
    assert lr(95_000) == pytest.approx(0.5) and lr(99_000) == pytest.approx(0.5 * (1 + math.cos(0.9 * math.pi)))
    assert lr(100_000) == 0.01 and lr(200_000) == 0.01  # floored at 1 %
