"""The BERT-style transformer trunk of the MaskBit generator.

Module and parameter names mirror the official code so released checkpoints load unchanged:
`layers.{i}.0` is the attention sub-block (`mha`, `norm`), `layers.{i}.1` the MLP sub-block (`net`, `norm`).
Attention runs through `F.scaled_dot_product_attention` but keeps `torch.nn.MultiheadAttention`'s packed
parameters (`in_proj_weight`, `in_proj_bias`, `out_proj`) and its initialisation.

`TransformerEncoder.gradient_checkpointing = True` (`training.gradient_checkpointing`, `modeling.recompute`)
recomputes each block in the backward pass instead of keeping its activations: less memory, about one more forward
of compute, and the same results (the RNG state is restored for the recomputed dropout). `sdpa_backend(...)` names
the kernel that `F.scaled_dot_product_attention` selects for given shapes, so that a run can say once which one it
gets.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from modeling.attention import scaled_dot_product_attention
from modeling.recompute import RecomputedStages

LAYER_NORM_EPS = 1e-12


class SelfAttention(nn.Module):
    """Bidirectional multi-head self-attention, a drop-in for `nn.MultiheadAttention(batch_first=True)`.

    Same parameters, same init (xavier-uniform packed q/k/v weight, zero biases) and the same random-number
    consumption at construction, so a seeded model is initialised identically to the official one.
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"hidden_dim ({dim}) must be divisible by heads ({heads})")
        self.heads = heads
        self.dropout = dropout  # on the attention probabilities, training only
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))  # q, k, v stacked
        self.in_proj_bias = nn.Parameter(torch.empty(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.in_proj_bias)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, L, D) -> (B, L, D)."""
        b, n, d = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)  # each (B, H, L, Dh)
        out = scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(out.transpose(1, 2).reshape(b, n, d))


class AttentionBlock(nn.Module):
    """Post-norm `LN(x + Dropout(Attn(x)))`, or pre-norm `x + Dropout(Attn(LN(x)))`."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0, use_prenorm: bool = False):
        super().__init__()
        self.mha = SelfAttention(dim, heads, dropout)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.use_prenorm = use_prenorm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_prenorm:
            return x + self.dropout(self.mha(self.norm(x)))
        return self.norm(x + self.dropout(self.mha(x)))


class FeedForwardBlock(nn.Module):
    """Post-norm `LN(x + Dropout(W2 GELU(W1 x)))`, or the pre-norm equivalent. Exact (erf) GELU."""

    def __init__(self, dim: int, mlp_dim: int, dropout: float = 0.0, use_prenorm: bool = False):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Linear(mlp_dim, dim), nn.Dropout(dropout))
        self.norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.use_prenorm = use_prenorm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_prenorm:
            return x + self.net(self.norm(x))
        return self.norm(x + self.net(x))


class TransformerEncoder(RecomputedStages, nn.Module):
    """`depth` (attention, MLP) block pairs; `layers[i]` is a 2-element ModuleList as in the official code."""

    def __init__(self, dim: int, depth: int, heads: int, mlp_dim: int, dropout: float = 0.0,
                 use_prenorm: bool = False):
        super().__init__()
        self.layers = nn.ModuleList([
            nn.ModuleList([AttentionBlock(dim, heads, dropout, use_prenorm),
                           FeedForwardBlock(dim, mlp_dim, dropout, use_prenorm)])
            for _ in range(depth)])
        self.gradient_checkpointing = False  # a runtime switch, not part of the state dict

    @staticmethod
    def _block(attention: nn.Module, feed_forward: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return feed_forward(attention(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, L, D) -> (B, L, D)."""
        for attention, feed_forward in self.layers:
            x = self.run_stage(self._block, attention, feed_forward, x)
        return x


def sdpa_backend(device: torch.device, dtype: torch.dtype, heads: int, head_dim: int, seq_len: int,
                 dropout: float = 0.0) -> str:
    """Name of the `F.scaled_dot_product_attention` kernel (torch.nn.attention.SDPBackend) that PyTorch selects
    for (1, heads, seq_len, head_dim) inputs of `dtype` on `device` with `dropout` (no mask, not causal), e.g.
    FLASH_ATTENTION, EFFICIENT_ATTENTION, CUDNN_ATTENTION or MATH (the unfused fallback). "unknown" where this
    PyTorch does not expose the choice."""
    from torch.nn.attention import SDPBackend
    try:
        q = torch.zeros(1, heads, seq_len, head_dim, device=device, dtype=dtype)
        return SDPBackend(torch._fused_sdp_choice(q, q, q, dropout_p=dropout)).name
    except (AttributeError, RuntimeError, ValueError):
        return "unknown"
