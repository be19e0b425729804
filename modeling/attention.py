"""Scaled dot-product attention for the house's own attention modules: `F.scaled_dot_product_attention` with one
CPU fix (modules built on `nn.MultiheadAttention`, which fixes their checkpoint layout, do not go through it).

On a CPU under bf16 autocast, the fused (flash) kernel's backward is pathologically slow in bf16: in torch 2.14, at
the tiny quickstart generator's shape (batch 16, 8 heads, 65 tokens, head size 16, one thread) forward + backward
took 22 ms in bf16 against 3.2 ms in float32 (`scripts/benchmark_attention.py`; `benchmark_generator.py` times the
whole step). So there, when gradients are needed, attention runs in float32 (autocast off, inputs upcast) and its
output is cast back. Nothing else changes: float32 runs, GPUs and inference take PyTorch's kernel as they are.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def kernel_dtype(device_type: str, dtype: torch.dtype, needs_grad: bool) -> torch.dtype:
    """The dtype the attention kernel runs in for inputs of `dtype` on `device_type`: float32 for bf16 on a CPU when
    gradients are needed, else `dtype` itself."""
    return torch.float32 if device_type == "cpu" and dtype == torch.bfloat16 and needs_grad else dtype


def runs_in_float32_on_cpu(q: torch.Tensor) -> bool:
    """True where `scaled_dot_product_attention(q, ...)` upcasts: bf16 inputs on a CPU with gradients needed."""
    return kernel_dtype(q.device.type, q.dtype, torch.is_grad_enabled() and q.requires_grad) != q.dtype


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                 dropout_p: float = 0.0) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v, no mask. q, k, v: (B, H, L, Dh) -> (B, H, L, Dh) in q's dtype."""
    if not runs_in_float32_on_cpu(q):
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
    with torch.autocast("cpu", enabled=False):  # autocast would cast the inputs straight back to bf16
        out = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), dropout_p=dropout_p)
    return out.to(q.dtype)
