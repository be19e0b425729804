"""Learning-rate schedules as multipliers of the peak lr, in optimizer steps (docs/design/reference-facts.md §5.2).

    scheduler = build_lr_scheduler(optimizer, "cosine_with_minimum", warmup_steps=5000, total_steps=1_350_000)
    ... optimizer.step(); scheduler.step()     # once per optimizer step

Every schedule except `constant` warms up linearly from 0, so the very first optimizer step runs at lr 0.
`cosine_with_minimum` then follows a half cosine from 1 to `min_lr_ratio` (0.1) over the remaining steps.
The other names are the official factory's (HuggingFace-style, unused by the official configs), with its defaults:
`cosine` (to 0), `cosine_with_restarts` (`num_cycles` half cosines from 1 to 0, each restarting at 1; 0 after
`total_steps`), `polynomial` (from the peak lr to the absolute `lr_end` = 1e-7 as `(1 - p) ** power`, power 1;
`lr_end` afterwards; the peak lr is the optimizer's constructor lr, `optimizer.defaults["lr"]`, as in the
reference), `linear` (to 0), `constant_with_warmup` and `constant` (no warm-up).
`cosine_to_end_lr` is TiTok's "cosine" (docs/design/titok-facts.md §5.4): after the warm-up
`(end_lr + (peak - end_lr) * max(0, cos_term)) / peak` with the absolute `end_lr`. It equals `cosine_with_minimum`
with `min_lr_ratio = end_lr / peak` mathematically but not in float64 (1-2 ulp apart on ~40% of the steps), so
TiTok configs use this exact expression.
`constant_cosine_tail` is Halton-MaskGIT's (docs/design/maskgit-pytorch-facts.md §5.2): warm-up, constant, then a
half cosine over the last 10 % of `total_steps`, floored at `min_lr_ratio` (0.01 in its configs).

Process count: the reference hands its schedulers to `accelerator.prepare`, which steps them once per process,
and compensates by multiplying the step counts by the process count. Here schedulers stay out of `prepare` and
are stepped exactly once per optimizer step, so the schedule in optimizer steps never depends on the number of
processes (for one process both give identical lrs).
"""
from __future__ import annotations

import math
from typing import Callable, Optional

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

SCHEDULES = ("cosine_with_minimum", "cosine", "cosine_with_restarts", "polynomial", "linear", "constant",
             "constant_with_warmup", "cosine_to_end_lr", "constant_cosine_tail")


def _warmup(step: int, warmup_steps: int) -> float:
    return float(step) / float(max(1, warmup_steps))


def _progress(step: int, warmup_steps: int, total_steps: int) -> float:
    return float(step - warmup_steps) / float(max(1, total_steps - warmup_steps))


def lr_multiplier_fn(name: str, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.1,
                     num_cycles: int = 1, power: float = 1.0, lr_end: float = 1e-7,
                     peak_lr: Optional[float] = None, end_lr: float = 0.0) -> Callable[[int], float]:
    """step -> lr / peak lr for schedule `name` (same float expressions as the reference).

    min_lr_ratio: cosine_with_minimum floor. num_cycles: cosine_with_restarts cycles. power, lr_end (absolute):
    polynomial, which also needs `peak_lr` (the lr the multiplier is applied to) to turn lr_end into a ratio.
    end_lr (absolute): cosine_to_end_lr, which also needs `peak_lr`.
    """
    if name not in SCHEDULES:
        raise ValueError(f"lr_scheduler.scheduler must be one of {SCHEDULES}, got {name!r}")
    if name == "polynomial":
        if peak_lr is None:
            raise ValueError("the polynomial lr schedule needs peak_lr (the optimizer's lr) to reach lr_end")
        if not peak_lr > lr_end:
            raise ValueError(f"lr_scheduler.params.lr_end ({lr_end}) must be smaller than the initial lr ({peak_lr})")
    if name == "cosine_to_end_lr" and not peak_lr:
        raise ValueError("the cosine_to_end_lr schedule needs peak_lr (the optimizer's lr) to reach end_lr")

    def multiplier(step: int) -> float:
        if name == "constant":
            return 1.0
        if step < warmup_steps:
            return _warmup(step, warmup_steps)
        if name == "constant_with_warmup":
            return 1.0
        if name == "constant_cosine_tail":
            tail_start = int(0.9 * total_steps)
            if step < tail_start:
                return 1.0
            progress = float(step - tail_start) / float(max(1, total_steps - tail_start))
            return max(min_lr_ratio, 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))
        if name == "linear":
            return max(0.0, float(total_steps - step) / float(max(1, total_steps - warmup_steps)))
        if name == "polynomial":
            if step > total_steps:
                return lr_end / peak_lr
            # the reference divides by total_steps - warmup_steps unguarded (ZeroDivisionError when they are equal)
            pct_remaining = 1 - (step - warmup_steps) / max(1, total_steps - warmup_steps)
            return ((peak_lr - lr_end) * pct_remaining ** power + lr_end) / peak_lr
        progress = _progress(step, warmup_steps, total_steps)
        if name == "cosine_with_restarts":
            if progress >= 1.0:
                return 0.0
            return max(0.0, 0.5 * (1.0 + math.cos(math.pi * ((float(num_cycles) * progress) % 1.0))))
        if name == "cosine_to_end_lr":  # TiTok's float expression
            return (end_lr + (peak_lr - end_lr) * max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))) / peak_lr
        cos_term = 0.5 * (1.0 + math.cos(math.pi * progress))
        if name == "cosine":
            return max(0.0, cos_term)
        return max(0.0, cos_term + min_lr_ratio - min_lr_ratio * cos_term)  # min + (1 - min) * cos_term

    return multiplier


def build_lr_scheduler(optimizer: Optimizer, name: str, warmup_steps: int, total_steps: int,
                       min_lr_ratio: float = 0.1, num_cycles: int = 1, power: float = 1.0, lr_end: float = 1e-7,
                       peak_lr: Optional[float] = None, end_lr: float = 0.0) -> LambdaLR:
    """LambdaLR over optimizer steps; its state dict holds only numbers (safe to load weights_only).

    The schedule-specific arguments default to the official values; `peak_lr` (polynomial only) defaults to the
    optimizer's constructor lr, `optimizer.defaults["lr"]`, as in the reference.
    """
    if peak_lr is None and name in ("polynomial", "cosine_to_end_lr"):
        peak_lr = optimizer.defaults["lr"]
    return LambdaLR(optimizer, lr_multiplier_fn(name, warmup_steps, total_steps, min_lr_ratio, num_cycles, power,
                                                lr_end, peak_lr, end_lr))


def lr_scheduler_from_config(optimizer: Optimizer, lr_scheduler, total_steps: int) -> LambdaLR:
    """`build_lr_scheduler` with the `lr_scheduler` config section (name and params) over `total_steps`."""
    p = lr_scheduler.params
    return build_lr_scheduler(optimizer, lr_scheduler.scheduler, p.warmup_steps, total_steps, p.min_lr_ratio,
                              num_cycles=p.num_cycles, power=p.power, lr_end=p.lr_end, end_lr=p.end_lr)


def configured_hparams(optimizer: Optimizer, scheduler) -> dict:
    """What the config asks for, taken from a freshly built optimizer/scheduler before a checkpoint is loaded:
    {"base_lrs": peak lr per group, "weight_decay": per group}."""
    return {"base_lrs": list(getattr(scheduler, "base_lrs", [g["lr"] for g in optimizer.param_groups])),
            "weight_decay": [g.get("weight_decay") for g in optimizer.param_groups]}


def apply_resume_hparams(optimizer: Optimizer, scheduler, configured: dict, source: str = "config") -> str:
    """After loading a checkpoint's optimizer and scheduler states: with source='config' put the configured peak lr
    and weight decay back (the checkpoint stores the values of the run that wrote it) and recompute the current lr
    from the restored step with this config's schedule, exactly as `LambdaLR.step` would; with 'checkpoint' keep
    the checkpoint's values. The schedule's shape and length always follow the config (they are not stored).
    Returns a line saying which values are in use."""
    stored_lrs = list(getattr(scheduler, "base_lrs", []))
    stored_wd = [g.get("weight_decay") for g in optimizer.param_groups]
    apply = source == "config" and isinstance(scheduler, LambdaLR)
    if apply:
        scheduler.base_lrs = list(configured["base_lrs"])
        for group, base_lr, wd in zip(optimizer.param_groups, configured["base_lrs"], configured["weight_decay"]):
            group["initial_lr"] = base_lr
            if wd is not None:
                group["weight_decay"] = wd
        lrs = [base_lr * lmbda(scheduler.last_epoch) for lmbda, base_lr in zip(scheduler.lr_lambdas,
                                                                                scheduler.base_lrs)]
        for group, lr in zip(optimizer.param_groups, lrs):
            group["lr"] = lr
        scheduler._last_lr = lrs
    used = "config" if apply else "checkpoint"

    def fmt(values):
        return "/".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in values)

    return (f"peak lr {fmt(scheduler.base_lrs)} (checkpoint {fmt(stored_lrs)}, config "
            f"{fmt(configured['base_lrs'])}), weight decay {fmt([g.get('weight_decay') for g in optimizer.param_groups])}"
            f" (checkpoint {fmt(stored_wd)}), from the {used}; step {getattr(scheduler, 'last_epoch', '?')}, lr now "
            f"{fmt([g['lr'] for g in optimizer.param_groups])}")
