"""Stop training on a NaN/inf loss or gradient norm before the broken state can reach a checkpoint."""
from __future__ import annotations

import math
from typing import Mapping, Optional

import torch

from utils.errors import MaskbitError


class NonFiniteLossError(MaskbitError, RuntimeError):
    """A loss term became NaN or infinite; the newest checkpoint on disk predates it."""


class NonFiniteGuard:
    """Collects each step's loss terms without syncing; `check()` syncs once and raises on the first bad step.

    The trainer calls `check_due()` at the start of each iteration (by then the device has finished the previous
    step, so the sync is nearly free) and `check()` always before writing a checkpoint. With several processes the
    verdict is all-reduced, so every rank stops at the same point instead of leaving the others waiting in a
    collective; that collective costs about a millisecond per step on a CPU (gloo), so `check_due()` runs it once
    every `sync_every` iterations. A bad step is then found up to `sync_every - 1` iterations late, never after a
    checkpoint.
    """

    def __init__(self, accelerator=None, sync_every: int = 10):
        self.accelerator = accelerator
        self.sync_every = sync_every
        self._calls = 0
        self._pending: list[tuple[int, Mapping[str, torch.Tensor], torch.Tensor]] = []

    def observe(self, step: int, terms: Mapping[str, torch.Tensor]) -> None:
        """Record the (detached, scalar) loss terms or gradient norms of optimizer step `step` (1-based: the step
        being taken)."""
        finite = torch.stack([t.detach().float().reshape(()) for t in terms.values()]).isfinite().all()
        self._pending.append((step, dict(terms), finite))

    @property
    def _distributed(self) -> bool:
        return self.accelerator is not None and self.accelerator.num_processes > 1

    def check_due(self) -> None:
        """Called once per training iteration: `check()` on one process; with several, every `sync_every`-th call
        (the same iteration on every rank)."""
        self._calls += 1
        if not self._distributed or self._calls % self.sync_every == 0:
            self.check()

    def check(self) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            all_finite = torch.ones((), dtype=torch.bool)
        else:
            all_finite = torch.stack([finite for _, _, finite in pending]).all()
        if self._distributed:
            flag = all_finite.to(self.accelerator.device, torch.float32).reshape(1)
            all_finite = self.accelerator.reduce(flag, reduction="sum") == self.accelerator.num_processes
        if bool(all_finite):
            return
        bad = self._first_bad(pending)
        if bad is None:
            raise NonFiniteLossError("A loss became non-finite on another process; training stopped. The newest "
                                     "checkpoint-<step> folder predates it.")
        step, terms = bad
        values = ", ".join(f"{k}={v}{' <-- non-finite' if not math.isfinite(v) else ''}" for k, v in terms.items())
        raise NonFiniteLossError(
            f"Non-finite loss at optimizer step {step}: {values}. Training stopped; the newest checkpoint-<step> "
            f"folder predates this step (nothing was saved after it). Lower the learning rate, use fp32 or bf16 "
            f"instead of fp16, or check the data, then resume.")

    @staticmethod
    def _first_bad(pending) -> Optional[tuple[int, dict[str, float]]]:
        for step, _, finite in pending:
            if not bool(finite):  # report every term of that step (loss terms and gradient norms)
                merged = {k: float(v) for s, terms, _ in pending if s == step for k, v in terms.items()}
                return step, merged
        return None
