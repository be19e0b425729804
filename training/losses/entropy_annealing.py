"""Entropy annealing of the LFQ quantizer loss (docs/design/reference-facts.md §4.1).

The quantizer's already-weighted entropy loss is added again, scaled by `factor * max(0, 1 - step / steps)`:
with the official values (weight 0.02, factor 2, 2000 steps) the effective entropy weight falls linearly from
0.06 at step 0 to 0.02 at step 2000 and stays there.
"""
from __future__ import annotations

import torch


def entropy_annealing_coefficient(step: int, steps: int, factor: float) -> float:
    """Extra multiple of the entropy loss at optimizer step `step` (python float, as the reference computes it)."""
    return max(0.0, 1 - step / steps) * factor


def annealed_quantizer_loss(quantizer_loss: torch.Tensor, entropy_loss: torch.Tensor, step: int, steps: int,
                            factor: float) -> torch.Tensor:
    """quantizer_loss + coefficient * entropy_loss; unchanged when `factor` is 0 (VQ configs)."""
    if factor > 0.0:
        return quantizer_loss + entropy_annealing_coefficient(step, steps, factor) * entropy_loss
    return quantizer_loss
