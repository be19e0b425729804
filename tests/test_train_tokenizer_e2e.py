"""End-to-end Stage-I training on CPU: artefacts, schedules, warm start, accumulation, guards, config errors."""
import json
import runpy
import sys

import pytest
import torch
from accelerate.state import AcceleratorState, GradientState

from data import write_synthetic_shards
from modeling import build_tokenizer, load_pretrained
from training import NonFiniteLossError, TokenizerTrainer
from utils.run_layout import read_metrics
from training.checkpoint import CheckpointNotFoundError
from training.losses import VQGANLoss
from train_utils import REPO, tiny_config, write_yaml
from utils.config import load_config


pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_synthetic_shards(str(tmp_path_factory.mktemp("shards")), num_train=64, num_val=8, resolution=16,
                                  seed=0)


@pytest.fixture(scope="module")
def tiny_run(shards, tmp_path_factory):
    """6 optimizer steps, GAN from step 3, checkpoints at 3 and 6, grids at 3 and 6, eval at 6."""
    out = tmp_path_factory.mktemp("tiny_run")
    trainer = TokenizerTrainer(tiny_config(shards, out))
    trainer.train()
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    return trainer


def test_tiny_run_writes_every_artefact(tiny_run):
    out = tiny_run.output_dir
    assert load_config([f"config={out / 'config.yaml'}"]).training.max_train_steps == 6  # merged config, valid
    assert "step 6: loss" in (out / "logs" / "log.txt").read_text()
    assert list((out / "logs").rglob("events.out.tfevents.*")), "tensorboard event file missing"
    assert sorted(p.name for p in (out / "train_images").glob("*.png")) == ["00000003.png", "00000006.png"]
    for step in (3, 6):
        ckpt = out / f"checkpoint-{step}"
        assert json.loads((ckpt / "metadata.json").read_text()) == {"global_step": step}
        for name in ("unwrapped_model/pytorch_model.bin", "ema_model/pytorch_model.bin", "training_state.pt",
                     "random_states_0.pt"):
            assert (ckpt / name).is_file(), name
    records = read_metrics(out / "metrics.jsonl")
    train = [r for r in records if "train/total_loss" in r]
    assert [r["step"] for r in train] == [2, 4, 6]
    assert all(torch.isfinite(torch.tensor(r["train/total_loss"])) for r in train)
    assert "train/discriminator_loss" not in train[0] and "train/discriminator_loss" in train[1]  # GAN from step 3
    for key in ("lr", "lr/tokenizer", "lr/discriminator", "perf/samples_per_sec", "bits/usage_00", "bits/usage_09",
                "bits/dead", "train/entropy_loss", "train/lecam_loss", "train/reconstruction_loss"):
        assert key in train[-1], key
    evals = [r for r in records if "eval/PSNR" in r]
    assert len(evals) == 1 and evals[0]["step"] == 6 and evals[0]["eval/PSNR"] > 0


def test_lr_schedules_in_optimizer_steps(tiny_run):
    train = [r for r in read_metrics(tiny_run.output_dir / "metrics.jsonl") if "lr" in r]
    # tokenizer: warm-up 2 then cosine to the 10 % floor at step 6 (lr logged after the step's scheduler update)
    assert [r["lr/tokenizer"] for r in train] == pytest.approx([1e-3, 1e-3 * (0.1 + 0.9 * 0.5), 1e-4])
    # discriminator: its own schedule starts at discriminator_start=3 (T_D = 6 - 3), so 1 step in at step 4
    assert [r["lr/discriminator"] for r in train] == pytest.approx([0.0, 5e-4, 1e-4])


def test_final_export_is_the_ema_model_and_loads_strictly(tiny_run):
    out = tiny_run.output_dir
    exported = torch.load(out / "pytorch_model.bin", weights_only=True)
    ema = torch.load(out / "checkpoint-6" / "ema_model" / "pytorch_model.bin", weights_only=True)
    plain = torch.load(out / "checkpoint-6" / "unwrapped_model" / "pytorch_model.bin", weights_only=True)
    assert exported.keys() == ema.keys() and all(torch.equal(exported[k], ema[k]) for k in ema)
    assert any(not torch.equal(ema[k], plain[k]) for k in plain)
    model = load_pretrained(build_tokenizer(tiny_run.config), out / "pytorch_model.bin")  # released format
    assert all(torch.equal(v, exported[k]) for k, v in model.state_dict().items())
    from_checkpoint = load_pretrained(build_tokenizer(tiny_run.config), out / "checkpoint-6")  # picks ema_model
    assert all(torch.equal(v, ema[k]) for k, v in from_checkpoint.state_dict().items())
    state = torch.load(out / "checkpoint-6" / "training_state.pt", weights_only=True)
    assert state["buffers"]["lecam"]["ema_real_logits_mean"].abs().item() > 0  # LeCAM EMAs are checkpointed
    assert set(state["optimizers"]) == {"tokenizer", "discriminator"}


def test_warm_start_from_init_checkpoint_and_missing_path(tiny_run, shards, tmp_path):
    init = str(tiny_run.output_dir / "checkpoint-3")
    cfg = tiny_config(shards, tmp_path / "warm", experiment={"init_checkpoint": init, "eval_every": 100},
                      training={"max_train_steps": 4})
    trainer = TokenizerTrainer(cfg)
    trainer.train()
    assert trainer.global_step == 4
    assert "Resumed from" in (tmp_path / "warm" / "logs" / "log.txt").read_text()
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    cfg["experiment"]["init_checkpoint"] = str(tmp_path / "missing" / "checkpoint-3")
    with pytest.raises(CheckpointNotFoundError, match="missing/checkpoint-3"):
        TokenizerTrainer(cfg)


def test_gradient_accumulation_counts_optimizer_steps(shards, tmp_path):
    cfg = tiny_config(shards, tmp_path, training={"gradient_accumulation_steps": 2, "max_train_steps": 2},
                      experiment={"save_every": 100, "eval_every": 100, "generate_every": 100, "log_every": 1})
    trainer = TokenizerTrainer(cfg)
    consumed = []
    batches = trainer.train_batches

    def counting(start_batch):
        for batch in batches(start_batch):
            consumed.append(1)
            yield batch

    trainer.train_batches = counting
    trainer.train()
    assert trainer.global_step == 2 and len(consumed) == 4
    assert trainer.schedulers["tokenizer"].last_epoch == 2
    assert trainer.ema.num_updates == 2


def test_nonfinite_loss_stops_and_keeps_the_last_good_checkpoint(shards, tmp_path, monkeypatch):
    original = VQGANLoss.generator_loss

    def poisoned(self, x, x_rec, info, step, *args, **kwargs):
        total, logs = original(self, x, x_rec, info, step, *args, **kwargs)
        if step == 2:  # the third optimizer step
            total, logs = total * float("nan"), {**logs, "total_loss": logs["total_loss"] * float("nan")}
        return total, logs

    monkeypatch.setattr(VQGANLoss, "generator_loss", poisoned)
    cfg = tiny_config(shards, tmp_path, experiment={"save_every": 2, "eval_every": 100, "generate_every": 100})
    with pytest.raises(NonFiniteLossError, match=r"step 3: .*total_loss=nan <-- non-finite"):
        TokenizerTrainer(cfg).train()
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-2"]
    assert not (tmp_path / "pytorch_model.bin").exists()


def test_bf16_autocast_runs_on_cpu(shards, tmp_path):
    cfg = tiny_config(shards, tmp_path, training={"mixed_precision": "bf16", "max_train_steps": 1},
                      losses={"discriminator_start": 0}, experiment={"eval_every": 100, "log_every": 1})
    TokenizerTrainer(cfg).train()
    record = read_metrics(tmp_path / "metrics.jsonl")[-1]
    assert record["step"] == 1 and torch.isfinite(torch.tensor(record["train/total_loss"]))
    assert "train/discriminator_loss" in record


def run_script_main(argv, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["train_tokenizer.py", *argv])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(REPO / "scripts" / "train_tokenizer.py"), run_name="__main__")
    return exit_info.value.code


def test_script_reports_config_errors(shards, tmp_path, monkeypatch, capsys):
    path = write_yaml(tiny_config(shards, tmp_path / "out"), tmp_path / "tiny.yaml")
    assert run_script_main([f"config={path}", "training.max_train_step=5"], monkeypatch) == 2
    err = capsys.readouterr().err
    assert "Unknown config key 'training.max_train_step'" in err and "Did you mean 'training.max_train_steps'" in err
    assert run_script_main([f"config={path}", f"experiment.init_checkpoint={tmp_path / 'nope'}"], monkeypatch) == 2
    err = capsys.readouterr().err
    assert "experiment.init_checkpoint" in err and "nope" in err and "Traceback" not in err


def test_wandb_logger_works_offline(shards, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = tiny_config(shards, tmp_path, experiment={"logger": "wandb", "log_every": 1, "generate_every": 1,
                                                    "eval_every": 100}, training={"max_train_steps": 1})
    TokenizerTrainer(cfg).train()
    assert list((tmp_path / "logs" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert list((tmp_path / "logs" / "wandb").rglob("reconstructions_*.png"))


def test_quickstart_config_validates():
    cfg = load_config([f"config={REPO / 'configs' / 'quickstart' / 'tokenizer_tiny.yaml'}"])
    vq = cfg.model.vq_model
    assert (vq.quantizer_type, vq.token_size, vq.codebook_size) == ("lookup-free", 10, 1024)
    assert cfg.losses.perceptual_loss == "none" and cfg.losses.discriminator_start < cfg.training.max_train_steps
    assert vq.entropy_loss_weight > 0 and cfg.dataset.preprocessing.resolution == 32
    # more than one channel per GroupNorm(32) group everywhere: otherwise it is an instance norm that erases colour
    assert vq.hidden_channels * min(vq.channel_mult) > 32
    # the generator's config describes the very tokenizer it loads
    gen = load_config([f"config={REPO / 'configs' / 'quickstart' / 'generator_tiny.yaml'}"])
    assert gen.model.vq_model == vq
