"""Training infrastructure: losses, optimisation, EMA, checkpoints and the trainers.

    from training import TokenizerTrainer
    TokenizerTrainer(config).train()

Generic pieces, reused by the Stage-II trainer: `Trainer` (loop, logging, resume), `CheckpointManager`,
`EMAModel`, `build_adamw`, `build_lr_scheduler`, `NonFiniteGuard`, `build_accelerator`.
"""
from training.checkpoint import CheckpointManager, latest_checkpoint, list_checkpoints
from training.ema import EMAModel, ema_decay
from training.lr_schedule import build_lr_scheduler, lr_multiplier_fn
from training.metrics import MetricsLogger, WindowMeans
from training.nonfinite import NonFiniteGuard, NonFiniteLossError
from training.optim import build_adamw, scaled_lr
from training.run_setup import build_accelerator, set_backend_flags, setup_file_logging
from training.generator_trainer import GeneratorTrainer
from training.maskgit_pytorch_trainer import MaskGITPytorchTrainer
from training.registry import register_trainer, trainer_class
from training.titok_generator_trainer import TiTokGeneratorTrainer
from training.titok_trainer import TiTokTokenizerTrainer
from training.tokenizer_trainer import TokenizerTrainer
from training.trainer import Trainer

__all__ = [
    "CheckpointManager", "EMAModel", "GeneratorTrainer", "MaskGITPytorchTrainer", "MetricsLogger", "NonFiniteGuard",
    "NonFiniteLossError",
    "TiTokGeneratorTrainer", "TiTokTokenizerTrainer", "TokenizerTrainer", "Trainer", "WindowMeans",
    "build_accelerator", "build_adamw", "build_lr_scheduler", "ema_decay", "latest_checkpoint", "list_checkpoints",
    "lr_multiplier_fn", "register_trainer", "scaled_lr", "set_backend_flags", "setup_file_logging", "trainer_class",
]
