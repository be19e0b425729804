"""Reconstruction grids saved during training."""
from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torchvision.utils import make_grid

from utils.atomic import atomic_path


def reconstruction_grid(originals: torch.Tensor, reconstructions: torch.Tensor, padding: int = 2) -> torch.Tensor:
    """(N, 3, H, W) originals and reconstructions -> (3, H', W') uint8 grid: originals on top, reconstructions
    below, values clamped to [0, 1] and truncated to uint8 like the evaluation."""
    images = torch.cat([originals, reconstructions]).detach().float().clamp(0.0, 1.0).cpu()
    grid = make_grid(images, nrow=originals.shape[0], padding=padding, pad_value=1.0)
    return (grid * 255).to(torch.uint8)


def save_grid(grid: torch.Tensor, path: Path) -> None:
    """Save a (3, H, W) uint8 grid as PNG (atomically: a killed run never leaves a cut image)."""
    with atomic_path(Path(path)) as tmp:
        Image.fromarray(grid.permute(1, 2, 0).numpy()).save(tmp, format="PNG")
