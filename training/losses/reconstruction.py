"""Pixel reconstruction loss of the Stage-I tokenizer (docs/design/reference-facts.md §4.1)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

RECONSTRUCTION_LOSSES = ("l2", "l1")


def reconstruction_loss(x: torch.Tensor, x_rec: torch.Tensor, kind: str = "l2") -> torch.Tensor:
    """Mean squared (l2) or absolute (l1) error over all elements of (B, 3, H, W) images; unweighted."""
    if kind == "l2":
        return F.mse_loss(x, x_rec, reduction="mean")
    if kind == "l1":
        return F.l1_loss(x, x_rec, reduction="mean")
    raise ValueError(f"losses.reconstruction_loss must be one of {RECONSTRUCTION_LOSSES}, got {kind!r}")
