"""Mask-ratio schedules and the training-time masking of split tokens.

A schedule maps r in [0, 1] to the fraction of elements that stay masked: during training r ~ U(0, 1) per
sample; during sampling r = (step + 1) / num_steps.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, Optional, Tuple

import torch


def arccos_mask_ratio(r: torch.Tensor) -> torch.Tensor:
    return torch.acos(r) / (math.pi * 0.5)


def cosine_mask_ratio(r: torch.Tensor) -> torch.Tensor:
    return torch.cos(r * math.pi * 0.5)


def linear_mask_ratio(r: torch.Tensor) -> torch.Tensor:
    return 1 - r


def square_mask_ratio(r: torch.Tensor) -> torch.Tensor:
    return 1 - r ** 2


def root_mask_ratio(r: torch.Tensor) -> torch.Tensor:
    return 1 - r ** 0.5


MASK_SCHEDULES: Dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "arccos": arccos_mask_ratio, "cosine": cosine_mask_ratio, "linear": linear_mask_ratio,
    "square": square_mask_ratio, "root": root_mask_ratio,  # root: sampling only in the official code
}


def mask_ratio(r: torch.Tensor, schedule: str = "arccos") -> torch.Tensor:
    """Fraction of elements masked at r in [0, 1] (elementwise)."""
    if schedule not in MASK_SCHEDULES:
        raise ValueError(f"Unknown mask schedule '{schedule}'; choose one of {sorted(MASK_SCHEDULES)}")
    return MASK_SCHEDULES[schedule](r)


def mask_tokens(tokens: torch.Tensor, mask_token: int, schedule: str = "arccos", min_masking_ratio: float = 0.0,
                generator: Optional[torch.Generator] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Mask split tokens (B, ...) for MLM training; returns (masked tokens, bool mask), both (B, ...).

    Per sample a ratio rho = schedule(r), r ~ U(0, 1) * (1 - min_masking_ratio); then every element (each
    position AND each split) is masked independently with probability rho, so the masked count is random.
    Random numbers come from `generator` (on its device) or the global RNG; the input is not modified.
    """
    if schedule == "root":
        raise ValueError("the 'root' schedule is for sampling only; train with arccos, cosine, linear or square")
    device = generator.device if generator is not None else tokens.device
    r = torch.rand(tokens.shape[0], generator=generator, device=device) * (1 - min_masking_ratio)
    ratio = mask_ratio(r, schedule).view(-1, *([1] * (tokens.dim() - 1)))
    mask = torch.rand(tokens.shape, generator=generator, device=device) < ratio
    mask = mask.to(tokens.device)
    return tokens.masked_fill(mask, mask_token), mask


def label_drop_mask(batch_size: int, drop_prob: float, generator: Optional[torch.Generator] = None,
                    device: Optional[torch.device] = None) -> torch.Tensor:
    """(B,) bool: True where a sample's class label is replaced by the null class (classifier-free guidance)."""
    rand_device = generator.device if generator is not None else device
    return (torch.rand(batch_size, generator=generator, device=rand_device) < drop_prob).to(device)
