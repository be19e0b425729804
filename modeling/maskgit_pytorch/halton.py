"""The Halton order of Halton-MaskGIT: a fixed quasi-random visiting order of the cells of a token grid.

    halton_order(16)[:3]   # tensor([[8, 5], [4, 10], [12, 1]])   (row, col)

Point n = 1, 2, ... of the 2-D Halton sequence is (radical inverse of n in base 2, radical inverse in base 3); the
base-2 coordinate scaled by the grid side and floored is the row, the base-3 one the column. The first 10,000 points
are taken and repeated cells dropped, keeping first occurrences in order (facts §7.2, §12.15). Up to grid 48 every
cell appears; from 64 on, 10,000 points miss a few cells (the official sampler then never writes them).
"""
from __future__ import annotations

import functools

import numpy as np
import torch

NUM_POINTS = 10_000  # official nb_point


def radical_inverse(n: np.ndarray, base: int) -> np.ndarray:
    """The digits of each n in `base` mirrored around the radix point (n = sum d_k b^k -> sum d_k b^-(k+1)), as
    float64 rounded once from the exact fraction num / b^m (integer numerator and denominator)."""
    n = np.asarray(n, dtype=np.int64).copy()
    num, den = np.zeros_like(n), np.ones_like(n)
    while n.any():
        live = n > 0
        num = np.where(live, num * base + n % base, num)
        den = np.where(live, den * base, den)
        n //= base
    return num / den


@functools.lru_cache(maxsize=None)
def _points(num_points: int) -> torch.Tensor:
    # The official points are Python floats (exact fractions rounded once) stored as float32; scaling and flooring
    # then happen in float32, so we round the same way to agree at cell borders.
    n = np.arange(1, num_points + 1)
    return torch.tensor(np.stack([radical_inverse(n, 2), radical_inverse(n, 3)], 1), dtype=torch.float32)


@functools.lru_cache(maxsize=None)
def _order(grid: int, num_points: int) -> torch.Tensor:
    cells = torch.floor(_points(num_points) * grid).long()
    flat = (cells[:, 0] * grid + cells[:, 1]).numpy()
    _, first = np.unique(flat, return_index=True)  # first occurrence of each cell, kept in sequence order
    return cells[np.sort(first)]


def halton_order(grid: int, num_points: int = NUM_POINTS) -> torch.Tensor:
    """(row, col) of the cells of a grid x grid map in Halton sampling order: int64 [grid*grid, 2] (fewer rows when
    `num_points` does not cover the grid, as the official order at grid >= 64)."""
    if grid < 1:
        raise ValueError(f"grid must be positive, got {grid}")
    return _order(grid, num_points).clone()
