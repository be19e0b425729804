"""Exponential moving average of a model's parameters, with the reference's decay warm-up
(docs/design/reference-facts.md §5.3).

    ema = EMAModel(model, max_decay=0.999)
    ... optimizer.step(); ema.update(model)
    ema.module(x)                 # averaged weights, a plain eval-mode copy of the model

Update t (1-based): k = t - 1, decay = 0 if k <= 0 else min((1 + k) / (10 + k), max_decay); then
shadow <- shadow - (1 - decay) * (shadow - param) for trainable parameters, shadow <- param otherwise.
Buffers are not averaged (they keep their initial values, like the reference's freshly built EMA model).
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn


def ema_decay(num_updates: int, max_decay: float) -> float:
    """Decay used by update number `num_updates` (1-based)."""
    k = max(0, num_updates - 1)
    if k <= 0:
        return 0.0
    return min((1 + k) / (10 + k), max_decay)


class EMAModel:
    def __init__(self, model: nn.Module, max_decay: float = 0.999):
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.max_decay = max_decay
        self.num_updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.num_updates += 1
        one_minus_decay = 1 - ema_decay(self.num_updates, self.max_decay)
        shadows, params = [], []
        for shadow, param in zip(self.module.parameters(), model.parameters()):
            if param.requires_grad:
                shadows.append(shadow)
                params.append(param)
            else:
                shadow.copy_(param)
        if shadows:  # the reference's elementwise ops in the same order, batched over tensors
            delta = torch._foreach_sub(shadows, params)
            torch._foreach_mul_(delta, one_minus_decay)
            torch._foreach_sub_(shadows, delta)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged model as a plain state dict (the released-checkpoint format)."""
        return self.module.state_dict()

    def load_state_dict(self, state_dict: dict[str, torch.Tensor], num_updates: int) -> None:
        """Restore averaged weights; `num_updates` (the global step on resume) restarts the decay warm-up there."""
        self.module.load_state_dict(state_dict)
        self.num_updates = num_updates
