"""Gradient checkpointing by stage (`training.gradient_checkpointing`): recompute a stage's activations in backward.

    class Encoder(RecomputedStages, nn.Module):
        def forward(self, x):
            for stage in self.stages:
                x = self.run_stage(stage, x)     # checkpointed when switched on, training and under grad
            return x

    set_gradient_checkpointing(model, True)      # every RecomputedStages part of `model`

Only the input of each stage is kept for backward; the stage runs a second time in the backward pass (about one more
forward of compute). The results are unchanged: the recomputation replays the same ops (RNG state restored, autocast
kept). The switch is a plain attribute, not part of the state dict, and does nothing in eval mode or without grad.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


class RecomputedStages:
    """Mixin for an `nn.Module` that runs a sequence of stages; `run_stage` recomputes one in backward when
    `gradient_checkpointing` is on, the module is training and grad is enabled."""

    gradient_checkpointing = False  # a runtime switch (an instance attribute once set), not in the state dict

    def run_stage(self, stage: Callable[..., torch.Tensor], *inputs: torch.Tensor) -> torch.Tensor:
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(stage, *inputs, use_reentrant=False)
        return stage(*inputs)


def set_gradient_checkpointing(model: nn.Module, enabled: bool = True) -> int:
    """Switch stage recomputation on (or off) in every `RecomputedStages` part of `model`; returns their number."""
    parts = [m for m in model.modules() if isinstance(m, RecomputedStages)]
    for part in parts:
        part.gradient_checkpointing = enabled
    return len(parts)
