"""Checks of a training config that fail before anything is built or written, naming the key and the fix."""
from __future__ import annotations

from utils.config import ConfigError

POSITIVE_KEYS = ("training.per_gpu_batch_size", "training.max_train_steps", "training.gradient_accumulation_steps",
                 "experiment.save_every", "experiment.eval_every", "experiment.generate_every",
                 "experiment.log_every", "experiment.log_grad_norm_every", "experiment.max_train_examples")


def _get(config, dotted: str):
    node = config
    for part in dotted.split("."):
        node = node[part]
    return node


def validate_training_config(config) -> None:
    """Counts, periods and sizes must be positive; keep_last must not be negative."""
    for key in POSITIVE_KEYS:
        value = _get(config, key)
        if value is None or value <= 0:
            raise ConfigError(f"{key} must be a positive integer, got {value!r}. Set {key}=N with N >= 1 (a period "
                              f"longer than training.max_train_steps turns that action off).")
    if config.experiment.keep_last < 0:
        raise ConfigError(f"experiment.keep_last must be >= 0 (0 keeps every checkpoint), got "
                          f"{config.experiment.keep_last}")
    if not config.training.ddp_bucket_cap_mb > 0:
        raise ConfigError(f"training.ddp_bucket_cap_mb must be > 0 (MiB per DDP gradient bucket; PyTorch's default "
                          f"is 25), got {config.training.ddp_bucket_cap_mb}")
    if config.training.overfit_batch and config.training.overfit_batch_num < 1:
        raise ConfigError(f"training.overfit_batch_num must be >= 1, got {config.training.overfit_batch_num}")
