"""Summing evaluation statistics across processes, so N processes give the metrics of one.

Works whenever torch.distributed is initialised (torchrun, `accelerate launch`, or a manual gloo/nccl group);
without it every call is a no-op.
"""
from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank_and_world_size() -> tuple[int, int]:
    return (dist.get_rank(), dist.get_world_size()) if is_distributed() else (0, 1)


def all_reduce_sum_(*tensors: torch.Tensor) -> None:
    """In-place sum of each tensor over all processes."""
    if is_distributed():
        for t in tensors:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)


def barrier() -> None:
    if is_distributed():
        dist.barrier()
