"""Scaled dot-product attention for the house's own attention modules: `F.scaled_dot_product_attention` with one
CPU fix (modules built on `nn.MultiheadAttention`, which fixes their checkpoint layout, do not go through it).

On a CPU under bf16 autocast, the fused (flash) kernel's backward is pathologically slow in bf16 (at the tiny
quickstart generator's shape: 22 ms forward + backward against 3.2 ms in float32, `scripts/benchmark_attention.py`;
`benchmark_generator.py` times the whole step), so there it runs in float32 (`modeling.cpu_bf16`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from modeling.cpu_bf16 import in_float32, runs_in_float32_on_cpu


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                 dropout_p: float = 0.0) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v, no mask. q, k, v: (B, H, L, Dh) -> (B, H, L, Dh)."""
    if not runs_in_float32_on_cpu(q):
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
    return in_float32(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p), q, k, v)
