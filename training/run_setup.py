"""Run setup shared by the trainers and scripts: backend flags, the `Accelerator`, logging to a file."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, set_seed

from utils.config import ConfigError

LOGGERS = ("tensorboard", "wandb")


def set_backend_flags(enable_tf32: bool) -> None:
    """`training.enable_tf32` (CUDA only): TF32 matmuls and cuDNN autotuning, as the reference sets them."""
    if enable_tf32 and torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.deterministic = False


def ddp_kwargs(training) -> DistributedDataParallelKwargs:
    """`training.ddp_*`: how DistributedDataParallel all-reduces the gradients (results are the same either way)."""
    return DistributedDataParallelKwargs(bucket_cap_mb=training.ddp_bucket_cap_mb,
                                         gradient_as_bucket_view=training.ddp_gradient_as_bucket_view)


def build_accelerator(config, output_dir: Path) -> Accelerator:
    """Accelerator with the config's gradient accumulation, mixed precision and tracker; seeds every RNG."""
    if config.experiment.logger not in LOGGERS:
        raise ConfigError(f"experiment.logger must be one of {LOGGERS}, got {config.experiment.logger!r}")
    mixed_precision = config.training.mixed_precision
    if mixed_precision not in ("no", "bf16", "fp16"):
        raise ConfigError(f"training.mixed_precision must be no, bf16 or fp16, got {mixed_precision!r}")
    set_backend_flags(config.training.enable_tf32)
    accelerator = Accelerator(
        gradient_accumulation_steps=config.training.gradient_accumulation_steps,
        mixed_precision=mixed_precision,
        log_with=config.experiment.logger,
        project_dir=str(output_dir / "logs"),
        split_batches=False,
        kwargs_handlers=[ddp_kwargs(config.training)],
    )
    set_seed(config.training.seed)
    return accelerator


def process_state():
    """accelerate's `PartialState` for scripts without an `Accelerator`. Like `AcceleratorState` it honours
    ACCELERATE_USE_CPU: without it, `ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2` on a
    machine without GPUs gives every process rank 0 of 1, and each one does all the work."""
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))


def setup_file_logging(output_dir: Path, is_main_process: bool, name: str = "maskbit") -> logging.Logger:
    """Log INFO to stdout and `<output_dir>/logs/log.txt` on the main process, warnings only elsewhere."""
    logger = logging.getLogger(name)
    logger.handlers.clear()
    logger.propagate = False
    logger.setLevel(logging.INFO if is_main_process else logging.WARNING)
    fmt = logging.Formatter("[%(asctime)s %(levelname)s] %(message)s", datefmt="%Y-%m-%d %H:%M:%S")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if is_main_process:
        (output_dir / "logs").mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(output_dir / "logs" / "log.txt"))
    for handler in handlers:
        handler.setFormatter(fmt)
        logger.addHandler(handler)
    for child in ("training", "modeling", "data"):  # library modules log through the same handlers
        lib = logging.getLogger(child)
        lib.handlers, lib.propagate = list(handlers), False
        lib.setLevel(logger.level)
    return logger
