"""Learning-rate schedules as multipliers of the peak lr, in optimizer steps (facts §5.2).

    scheduler = build_lr_scheduler(optimizer, "cosine_with_minimum", warmup_steps=5000, total_steps=1_350_000)
    ... optimizer.step(); scheduler.step()     # once per optimizer step

Every schedule except `constant` warms up linearly from 0, so the very first optimizer step runs at lr 0.
`cosine_with_minimum` then follows a half cosine from 1 to `min_lr_ratio` (0.1) over the remaining steps.

Process count: the reference hands its schedulers to `accelerator.prepare`, which steps them once per process,
and compensates by multiplying the step counts by the process count. Here schedulers stay out of `prepare` and
are stepped exactly once per optimizer step, so the schedule in optimizer steps never depends on the number of
processes (for one process both give identical lrs).
"""
from __future__ import annotations

import math
from typing import Callable

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

SCHEDULES = ("cosine_with_minimum", "cosine", "linear", "constant", "constant_with_warmup")


def _warmup(step: int, warmup_steps: int) -> float:
    return float(step) / float(max(1, warmup_steps))


def _progress(step: int, warmup_steps: int, total_steps: int) -> float:
    return float(step - warmup_steps) / float(max(1, total_steps - warmup_steps))


def lr_multiplier_fn(name: str, warmup_steps: int, total_steps: int,
                     min_lr_ratio: float = 0.1) -> Callable[[int], float]:
    """step -> lr / peak lr for schedule `name` (same float expressions as the reference)."""
    if name not in SCHEDULES:
        raise ValueError(f"lr_scheduler.scheduler must be one of {SCHEDULES}, got {name!r}")

    def multiplier(step: int) -> float:
        if name == "constant":
            return 1.0
        if step < warmup_steps:
            return _warmup(step, warmup_steps)
        if name == "constant_with_warmup":
            return 1.0
        if name == "linear":
            return max(0.0, float(total_steps - step) / float(max(1, total_steps - warmup_steps)))
        cos_term = 0.5 * (1.0 + math.cos(math.pi * _progress(step, warmup_steps, total_steps)))
        if name == "cosine":
            return max(0.0, cos_term)
        return max(0.0, cos_term + min_lr_ratio - min_lr_ratio * cos_term)  # min + (1 - min) * cos_term

    return multiplier


def build_lr_scheduler(optimizer: Optimizer, name: str, warmup_steps: int, total_steps: int,
                       min_lr_ratio: float = 0.1) -> LambdaLR:
    """LambdaLR over optimizer steps; its state dict holds only numbers (safe to load weights_only)."""
    return LambdaLR(optimizer, lr_multiplier_fn(name, warmup_steps, total_steps, min_lr_ratio))
