"""How many tokens each step of the MaskGIT-pytorch (v1) and Halton-MaskGIT (v2) samplers decides.

    confidence_schedule(8, 16, "arccos", version=1)  # [1, 18, 26, 32, 38, 43, 48, 50]   tokens revealed per step
    confidence_schedule(8, 16, "arccos", version=2)  # [0, 23, 47, 72, 99, 129, 167, 256] cumulative targets
    halton_schedule(8, 16)                           # [(0, 20), (20, 41), ..., (173, 256)] Halton-order slices

All values are computed in float32 with the official operations (facts §6, §7.1, §7.3, §12.13-15), so the counts
equal the official ones including their rounding quirks. `cells` (default grid^2) runs a schedule over another
number of tokens: image editing (`modeling.edit`) schedules each sample's editable tokens only.
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple, Union

import torch

MODES = ("root", "linear", "square", "cosine", "arccos")


def _check(step: int, grid: int) -> None:
    if step < 1 or grid < 1:
        raise ValueError(f"step and grid must be positive, got step={step}, grid={grid}")


def confidence_schedule(step: int, grid: int, mode: Union[str, Sequence[int]] = "arccos",
                        version: int = 2, cells: Optional[int] = None) -> List[int]:
    """Per-step token counts of the confidence samplers on a grid x grid token map.

    version 1 (`adap_sche`): the number of tokens revealed at each step. v = linspace(1, 0, step); f(v) is
    root 1-sqrt(v), linear 1-v, square 1-v^2, cosine cos(v pi/2), arccos arccos(v)/(pi/2); counts =
    round(f / sum(f) * grid^2) (half to even), zeros bumped to 1, the last count corrected so that they sum to
    grid^2 (it may end smaller than its neighbour). `step=1` divides 0 by 0 officially; we refuse it. A list of
    ints as `mode` is returned as is (the official custom schedule).

    version 2 (`build_sequence`): the cumulative number of decided tokens after each step, before the sampler's
    max(target, i + 1) clamp. v = linspace(0, 1, step); f(v) is root sqrt(v), linear v, square v^2, cosine
    1-cos(v pi/2), arccos 1-arccos(v)/(pi/2); target = trunc(f * grid^2).
    """
    _check(step, grid)
    if not isinstance(mode, str):
        return [int(c) for c in mode]
    if mode not in MODES:
        raise ValueError(f"unknown schedule mode {mode!r}; choose one of {MODES} (or pass a list of counts)")
    cells = grid * grid if cells is None else cells
    if version == 1:
        if step < 2:
            raise ValueError("the v1 confidence schedule needs step >= 2 (the official one divides by zero at 1)")
        v = torch.linspace(1, 0, step)
        f = {"root": lambda: 1 - v ** 0.5, "linear": lambda: 1 - v, "square": lambda: 1 - v ** 2,
             "cosine": lambda: torch.cos(v * math.pi * 0.5),
             "arccos": lambda: torch.arccos(v) / (math.pi * 0.5)}[mode]()
        counts = (f / f.sum() * cells).round()
        counts[counts == 0] = 1
        counts[-1] += cells - counts.sum()
        return [int(c) for c in counts.int()]
    if version == 2:
        v = torch.linspace(0, 1, step)
        f = {"root": lambda: v ** 0.5, "linear": lambda: v, "square": lambda: v ** 2,
             "cosine": lambda: 1 - torch.cos(v * math.pi * 0.5),
             "arccos": lambda: 1 - torch.arccos(v) / (math.pi * 0.5)}[mode]()
        return [int(c) for c in (f * cells).long()]
    raise ValueError(f"version must be 1 or 2, got {version!r}")


def halton_counts(step: int, grid: int, cells: Optional[int] = None) -> List[int]:
    """r_i = max(i + 1, trunc(grid^2 * (1 - arccos((i+1)/step) / (pi/2)))), in float32: the number of Halton-order
    cells written up to step i (16x16, 8 steps: 20, 41, 62, 85, 110, 138, 173, 256); `cells` replaces grid^2."""
    _check(step, grid)
    cells = grid * grid if cells is None else cells
    counts = []
    for i in range(step):
        ratio = 1 - torch.arccos(torch.tensor((i + 1) / step)) / (math.pi * 0.5)
        counts.append(max(i + 1, int(ratio * cells)))
    return counts


def halton_schedule(step: int, grid: int, cumulative: bool = False,
                    cells: Optional[int] = None) -> List[Tuple[int, int]]:
    """The slice [start, stop) of the Halton order written at each step.

    Incremental (official since `fcdc837`, default): step i writes order[r_{i-1} : r_i], each cell exactly once.
    `cumulative=True` is the first v2 release (`5ffd61f`): step i re-writes order[0 : r_i].
    """
    counts = halton_counts(step, grid, cells)
    if cumulative:
        return [(0, r) for r in counts]
    return list(zip([0] + counts[:-1], counts))
