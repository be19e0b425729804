"""Halton-MaskGIT v2: the DiT-like adaLN `Transformer` (facts §3), under the released key names.

    model = HaltonTransformer(input_size=16, hidden_dim=768, codebook_size=16384, depth=12, heads=12, mlp_dim=3072,
                              dropout=0.1, nclass=1000, register=1, proj=1)
    logits = model(tokens, labels, drop_label)     # (B, G, G) int64, (B,), (B,) bool -> (B, G*G, K + 1)

RMSNorm everywhere (float32 inside), QK-norm over the whole projected q and k, SwiGLU feed-forward, the class only
through the adaLN modulation, `register` learned tokens appended after the image tokens, and an output head whose
weight *is* the token embedding (both keys are in the state dict).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from modeling.attention import scaled_dot_product_attention


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x (B, N, D) * (1 + scale (B, D)) + shift (B, D)."""
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class RMSNorm(nn.Module):
    """x * rsqrt(mean(x^2) + eps), computed in float32 and cast back, then * weight and + bias when present."""

    def __init__(self, dim: int, eps: float = 1e-5, weight: bool = True, bias: bool = False):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim)) if weight else None
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.float()
        y = (y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x)
        if self.weight is not None:
            y = self.weight * y
        if self.bias is not None:
            y = y + self.bias
        return y


class Attention(nn.Module):
    """Bias-free q/k/v/o of width heads * (dim // heads) (smaller than dim when heads does not divide it)."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.head_dim, self.dropout = heads, dim // heads, dropout
        width = heads * self.head_dim
        self.wq, self.wk, self.wv = (nn.Linear(dim, width, bias=False) for _ in range(3))
        self.wo = nn.Linear(width, dim, bias=False)
        self.q_norm = RMSNorm(width, weight=False)  # no parameters: QK-norm over all heads jointly
        self.k_norm = RMSNorm(width, weight=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        v = self.wv(x)
        q, k = self.q_norm(self.wq(x)).to(v), self.k_norm(self.wk(x)).to(v)
        q, k, v = (t.view(batch, length, self.heads, self.head_dim).transpose(1, 2) for t in (q, k, v))
        dropout = self.dropout if self.training else 0.0
        out = scaled_dot_product_attention(q, k, v, dropout_p=dropout)
        out = self.wo(out.transpose(1, 2).contiguous().view(batch, length, -1))
        return F.dropout(out, self.dropout) if self.training and self.dropout > 0 else out


def swiglu_width(mlp_dim: int, multiple_of: int = 256) -> int:
    """Hidden width of the SwiGLU: int(2 * mlp_dim / 3) rounded up to a multiple of 256."""
    hidden = int(2 * mlp_dim / 3)
    return multiple_of * math.ceil(hidden / multiple_of)


class FeedForward(nn.Module):
    """w2(SiLU(w1 x) * w3 x), bias-free; dropout on the product in training."""

    def __init__(self, dim: int, mlp_dim: int, dropout: float):
        super().__init__()
        hidden = swiglu_width(mlp_dim)
        self.dropout = dropout
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.w1(x)) * self.w3(x)
        if self.training and self.dropout > 0:
            h = F.dropout(h, self.dropout)
        return self.w2(h)


class Block(nn.Module):
    """x += gate1 * Attn(modulate(RMSNorm(x))); x += gate2 * FF(modulate(RMSNorm(x))); the six (B, D) modulation
    vectors (shift1, scale1, gate1, shift2, scale2, gate2) come from Linear(SiLU(class embedding))."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, dropout: float):
        super().__init__()
        self.mlp = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        self.ln1 = RMSNorm(dim)
        self.attn = Attention(dim, heads, dropout)
        self.ln2 = RMSNorm(dim)
        self.ff = FeedForward(dim, mlp_dim, dropout)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.mlp(cond).chunk(6, dim=1)
        x = x + gate1.unsqueeze(1) * self.attn(modulate(self.ln1(x), shift1, scale1))
        return x + gate2.unsqueeze(1) * self.ff(modulate(self.ln2(x), shift2, scale2))


class TransformerEncoder(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int, mlp_dim: int, dropout: float):
        super().__init__()
        self.layers = nn.ModuleList(Block(dim, heads, mlp_dim, dropout) for _ in range(depth))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        for block in self.layers:
            x = block(x, cond)
        return x


class AdaNorm(nn.Module):
    """RMSNorm (weight and bias), then modulate with (shift, scale) = Linear(SiLU(cond))."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm_final = RMSNorm(dim, bias=True)
        self.mlp = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        shift, scale = self.mlp(cond).chunk(2, dim=1)
        return modulate(self.norm_final(x), shift, scale)


class HaltonTransformer(nn.Module):
    """The v2 transformer (official class `Transformer`); constructor arguments are the official ones.

    `proj > 1` (a patchified variant no released model uses) is refused.
    """

    version = "v2"

    def __init__(self, input_size: int = 16, hidden_dim: int = 768, codebook_size: int = 16384, depth: int = 12,
                 heads: int = 16, mlp_dim: int = 3072, dropout: float = 0.0, nclass: int = 1000, register: int = 1,
                 proj: int = 1):
        super().__init__()
        if proj != 1:
            raise ValueError(f"proj={proj}: only the un-patchified transformer (proj=1) of every released "
                             f"Halton-MaskGIT model is implemented.")
        self.grid_size, self.hidden_dim, self.codebook_size, self.nclass = input_size, hidden_dim, codebook_size, nclass
        self.register, self.proj = register, proj
        self.seq_len, self.num_classes = input_size ** 2, nclass
        self.mask_token = codebook_size
        self.cls_emb = nn.Embedding(nclass + 1, hidden_dim)  # row nclass: the null class
        self.tok_emb = nn.Embedding(codebook_size + 1, hidden_dim)  # row K: the mask token
        self.pos_emb = nn.Embedding(input_size ** 2, hidden_dim)
        self.transformer = TransformerEncoder(hidden_dim, depth, heads, mlp_dim, dropout)
        self.last_norm = AdaNorm(hidden_dim)
        self.head = nn.Linear(hidden_dim, codebook_size + 1)
        self.head.weight = self.tok_emb.weight  # tied: one parameter, two state-dict keys
        if register > 0:
            self.reg_tokens = nn.Embedding(register, hidden_dim)
        self.initialize_weights()

    @torch.no_grad()
    def initialize_weights(self) -> None:
        """Official order: xavier-uniform / zero bias on every Linear (the tied head too), N(0, 0.02) embeddings,
        zeroed adaLN Linears (blocks start as identity), N(0, 0.02) register tokens."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for embedding in (self.cls_emb, self.tok_emb, self.pos_emb):
            nn.init.normal_(embedding.weight, std=0.02)
        for block in self.transformer.layers:
            nn.init.zeros_(block.mlp[1].weight)
            nn.init.zeros_(block.mlp[1].bias)
        if self.register > 0:
            nn.init.normal_(self.reg_tokens.weight, std=0.02)

    def forward(self, tokens: torch.Tensor, labels: torch.Tensor, drop_label: torch.Tensor) -> torch.Tensor:
        """tokens (B, G, G) int64 in [0, K], labels (B,) int64, drop_label (B,) bool (True = null class)
        -> logits (B, G*G, K + 1). The caller's tensors are never modified."""
        batch, height, width = tokens.shape
        class_ids = torch.where(drop_label, torch.full_like(labels, self.nclass), labels)
        cond = self.cls_emb(class_ids)
        positions = torch.arange(height * width, device=tokens.device)
        x = self.tok_emb(tokens.reshape(batch, height * width)) + self.pos_emb(positions)
        if self.register > 0:
            registers = self.reg_tokens(torch.arange(self.register, device=tokens.device))
            x = torch.cat([x, registers.expand(batch, -1, -1)], dim=1)
        x = self.transformer(x, cond)
        x = self.last_norm(x[:, :height * width].contiguous(), cond)
        return self.head(x)
