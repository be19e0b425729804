"""Config system: YAML + dotted overrides onto the typed schema, with readable errors."""
import glob
import os
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from utils.config import ConfigError, load_config, save_config, with_defaults

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_yaml(tmp_path, text, name="exp.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_defaults_come_from_schema():
    cfg = load_config([])
    assert cfg.training.per_gpu_batch_size == 16
    assert cfg.model.vq_model.channel_mult == [1, 1, 2, 2, 4]
    assert cfg.lr_scheduler.params.min_lr_ratio == 0.1


def test_override_types_are_inferred():
    cfg = load_config(["training.per_gpu_batch_size=32", "optimizer.params.learning_rate=2e-4",
                       "model.vq_model.channel_mult=[1,2,4]", "training.use_ema=false",
                       "experiment.name=run_7", "training.max_train_steps=1_350_000"])
    assert cfg.training.per_gpu_batch_size == 32 and isinstance(cfg.training.per_gpu_batch_size, int)
    assert cfg.optimizer.params.learning_rate == pytest.approx(2e-4)
    assert list(cfg.model.vq_model.channel_mult) == [1, 2, 4]
    assert cfg.training.use_ema is False
    assert cfg.experiment.name == "run_7"
    assert cfg.training.max_train_steps == 1_350_000


def test_string_keys_keep_yaml_words_as_typed():
    cfg = load_config(["training.mixed_precision=no", "experiment.name=on", "training.seed=7"])
    assert cfg.training.mixed_precision == "no" and cfg.experiment.name == "on" and cfg.training.seed == 7


def test_yaml_numbers_underscores_and_interpolation(tmp_path):
    path = write_yaml(tmp_path, """
training:
  max_train_steps: 1_350_000
optimizer:
  params:
    learning_rate: 1e-4
    weight_decay: 0.045
lr_scheduler:
  params:
    learning_rate: ${optimizer.params.learning_rate}
""")
    cfg = load_config([f"config={path}", "optimizer.params.learning_rate=3e-4"])
    assert cfg.training.max_train_steps == 1_350_000
    assert isinstance(cfg.optimizer.params.learning_rate, float)
    # the command line wins, and the interpolation follows it
    assert cfg.lr_scheduler.params.learning_rate == pytest.approx(3e-4)
    assert cfg.config == path


def test_lfq_codebook_size_follows_token_size():
    cfg = load_config(["model.vq_model.token_size=14", "model.vq_model.codebook_size=4096"])
    assert cfg.model.vq_model.codebook_size == 2 ** 14
    vq = load_config(["model.vq_model.quantizer_type=lookup", "model.vq_model.codebook_size=1024"])
    assert vq.model.vq_model.codebook_size == 1024


@pytest.mark.parametrize("arg, wrong, suggestion", [
    ("training.per_gpu_bach_size=3", "training.per_gpu_bach_size", "training.per_gpu_batch_size"),
    ("trainng.seed=1", "trainng", "training"),
    ("model.vq_model.tokensize=12", "model.vq_model.tokensize", "model.vq_model.token_size"),
])
def test_unknown_cli_key_names_key_and_suggests(arg, wrong, suggestion):
    with pytest.raises(ConfigError) as info:
        load_config([arg])
    msg = str(info.value)
    assert f"'{wrong}'" in msg and f"Did you mean '{suggestion}'" in msg


def test_unknown_yaml_key_names_file(tmp_path):
    path = write_yaml(tmp_path, "losses:\n  perceptual_wieght: 0.1\n")
    with pytest.raises(ConfigError) as info:
        load_config([f"config={path}"])
    msg = str(info.value)
    assert "losses.perceptual_wieght" in msg and "losses.perceptual_weight" in msg and path in msg


def test_wrong_type_names_key_value_and_type():
    with pytest.raises(ConfigError) as info:
        load_config(["training.per_gpu_batch_size=abc"])
    msg = str(info.value)
    assert "training.per_gpu_batch_size" in msg and "'abc'" in msg and "Integer" in msg


def test_missing_config_file_and_bad_argument():
    with pytest.raises(ConfigError, match="Config file not found"):
        load_config(["config=does/not/exist.yaml"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(["--lr", "3"])


def test_broken_interpolation_is_reported():
    with pytest.raises(ConfigError, match="optimizer.params.lr"):
        load_config(["lr_scheduler.params.learning_rate=${optimizer.params.lr}"])


def test_with_defaults_accepts_partial_dict():
    cfg = with_defaults({"model": {"vq_model": {"token_size": 10}}})
    assert cfg.model.vq_model.codebook_size == 1024
    assert cfg.model.vq_model.hidden_channels == 128
    with pytest.raises(ConfigError, match="hidden_chanels"):
        with_defaults({"model": {"vq_model": {"hidden_chanels": 10}}})


def test_save_config_round_trip(tmp_path):
    cfg = load_config(["experiment.name=abc", "training.seed=7"])
    save_config(cfg, tmp_path / "out" / "config.yaml")
    again = load_config([f"config={tmp_path / 'out' / 'config.yaml'}"])
    assert OmegaConf.to_container(again.training) == OmegaConf.to_container(cfg.training)
    assert again.experiment.name == "abc"


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(REPO, "configs", "**", "*.yaml"), recursive=True)),
                         ids=lambda p: os.path.relpath(p, REPO))
def test_every_shipped_config_validates(path):
    cfg = load_config([f"config={path}"])
    assert cfg.experiment.name


def test_cli_help_and_error_exit_codes():
    code = "from utils.config import parse_args_or_exit; parse_args_or_exit()"
    ok = subprocess.run([sys.executable, "-c", code, "--help", "training.seed=3"], capture_output=True, text=True)
    assert ok.returncode == 0 and "usage:" in ok.stdout and "seed: 3" in ok.stdout
    bad = subprocess.run([sys.executable, "-c", code, "training.sed=3"], capture_output=True, text=True)
    assert bad.returncode == 2 and "Did you mean 'training.seed'" in bad.stderr
