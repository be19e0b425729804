"""Training-time masking of each version (facts §5.1, §5.2, §12.9), with its uniform draws given.

    masked, mask = mask_code(code, version="v2", mode="arccos", value=16384, r=torch.rand(B), u=torch.rand(B, G, G))

Per sample a masking probability p(r) from r ~ U(0, 1); each token is masked when its own u ~ U(0, 1) is below p.
The two versions differ in the square schedule (v1 r^2, v2 1 - r^2); v2 adds root; the others agree.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, Optional, Tuple

import torch

MASKING_PROBABILITY: Dict[str, Dict[str, Callable[[torch.Tensor], torch.Tensor]]] = {
    "v1": {
        "linear": lambda r: r,
        "square": lambda r: r ** 2,
        "cosine": lambda r: torch.cos(r * math.pi * 0.5),
        "arccos": lambda r: torch.arccos(r) / (math.pi * 0.5),
    },
    "v2": {
        "root": lambda r: 1 - torch.sqrt(r),
        "linear": lambda r: 1 - r,
        "square": lambda r: 1 - r ** 2,
        "cosine": lambda r: torch.cos(r * math.pi * 0.5),
        "arccos": lambda r: torch.arccos(r) / (math.pi * 0.5),
    },
}


def masking_probability(r: torch.Tensor, *, version: str, mode: str) -> torch.Tensor:
    """p(r) of the official `get_mask_code` of `version` for schedule `mode`."""
    if version not in MASKING_PROBABILITY:
        raise ValueError(f"version must be one of {sorted(MASKING_PROBABILITY)}, got {version!r}")
    schedules = MASKING_PROBABILITY[version]
    if mode not in schedules:
        raise ValueError(f"the {version} training masking schedule must be one of {sorted(schedules)}, got {mode!r}")
    return schedules[mode](r)


def mask_code(code: torch.Tensor, *, version: str, mode: str, value: int, r: torch.Tensor, u: torch.Tensor,
              random_codes: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """code (B, H, W) int64, r (B,) and u (B, H, W) in [0, 1) -> (masked code (B, H, W), mask (B, H, W) bool).

    Masked positions take `value` (the mask id K). v1 only: with `value <= 0` (the official "noise" models) they take
    `random_codes` (B, H, W) instead, uniform codes the caller draws. `code` is not modified.
    """
    p = masking_probability(r, version=version, mode=mode)
    mask = u < p.view(-1, *([1] * (code.dim() - 1)))
    if value > 0:
        return torch.where(mask, torch.full_like(code, value), code), mask
    if version != "v1" or random_codes is None:
        raise ValueError(f"mask value {value} <= 0 means 'replace by random codes', which v1 does and needs "
                         f"random_codes; use the mask id (codebook size) as the value otherwise.")
    return torch.where(mask, random_codes.to(code.dtype), code), mask
