"""MaskGIT-pytorch v1: the BERT-like pre-LN `MaskTransformer` (facts §2), under the released key names.

    model = MaskTransformer(img_size=256, hidden_dim=768, codebook_size=1024, f_factor=16, depth=24, heads=16,
                            mlp_dim=3072, dropout=0.1, nclass=1000)
    logits = model(tokens, labels, drop_label)     # (B, G, G) int64, (B,), (B,) bool -> (B, G*G, K + 1)

One embedding table serves codes (rows 0..K-1), the mask token (row K), the classes (row K + 1 + c) and the null
class (row K + 1 + nclass). The class token goes *after* the G*G image tokens. The output head is the product with
the whole table plus a position-wise bias, sliced to the G*G image positions and the K + 1 code-or-mask classes.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn


def _projection(dim: int, dropout: float, second_linear: bool) -> nn.Sequential:
    """LN(1e-12) -> Dropout -> Linear -> GELU -> LN(1e-12) [-> Dropout -> Linear] (`first_layer` / `last_layer`)."""
    layers = [nn.LayerNorm(dim, eps=1e-12), nn.Dropout(dropout), nn.Linear(dim, dim), nn.GELU(),
              nn.LayerNorm(dim, eps=1e-12)]
    if second_linear:
        layers += [nn.Dropout(dropout), nn.Linear(dim, dim)]
    return nn.Sequential(*layers)


class SelfAttention(nn.Module):
    """`nn.MultiheadAttention` (fused q/k/v projection, biases) used as self-attention."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.mha = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the official call also returns the head-averaged attention weights (need_weights=True); they are not used
        # here, and without them PyTorch takes its fused attention path (same values up to float rounding)
        return self.mha(x, x, x, need_weights=False)[0]


class FeedForward(nn.Module):
    def __init__(self, dim: int, mlp_dim: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(mlp_dim, dim),
                                 nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PreNorm(nn.Module):
    """x -> fn(LayerNorm(x)) (the residual is added by the encoder)."""

    def __init__(self, dim: int, fn: nn.Module):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.norm(x))


class TransformerEncoder(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int, mlp_dim: int, dropout: float):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleList([PreNorm(dim, SelfAttention(dim, heads, dropout)),
                           PreNorm(dim, FeedForward(dim, mlp_dim, dropout))])
            for _ in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for attention, feed_forward in self.layers:
            x = attention(x) + x
            x = feed_forward(x) + x
        return x


class MaskTransformer(nn.Module):
    """The v1 transformer; constructor arguments are the official ones (`f_factor` is the token-grid side G,
    `img_size` is recorded only)."""

    version = "v1"

    def __init__(self, img_size: int = 256, hidden_dim: int = 768, codebook_size: int = 1024, f_factor: int = 16,
                 depth: int = 24, heads: int = 16, mlp_dim: int = 3072, dropout: float = 0.1, nclass: int = 1000):
        super().__init__()
        self.img_size, self.hidden_dim, self.codebook_size, self.nclass = img_size, hidden_dim, codebook_size, nclass
        self.grid_size, self.seq_len, self.num_classes = f_factor, f_factor ** 2, nclass
        self.mask_token = codebook_size  # the mask id K, also a predicted class
        self.null_class = codebook_size + 1 + nclass  # table row of a dropped label
        num_positions = f_factor ** 2 + 1  # image tokens, then the class token
        vocabulary = codebook_size + 1 + nclass + 1
        self.pos_emb = nn.init.trunc_normal_(nn.Parameter(torch.zeros(1, num_positions, hidden_dim)), 0.0, 0.02)
        self.bias = nn.Parameter(torch.zeros(num_positions, vocabulary))
        self.tok_emb = nn.Embedding(vocabulary, hidden_dim)
        self.first_layer = _projection(hidden_dim, dropout, second_linear=True)
        self.transformer = TransformerEncoder(hidden_dim, depth, heads, mlp_dim, dropout)
        self.last_layer = _projection(hidden_dim, dropout, second_linear=False)

    def forward(self, tokens: torch.Tensor, labels: torch.Tensor,
                drop_label: Optional[torch.Tensor]) -> torch.Tensor:
        """tokens (B, G, G) int64 in [0, K], labels (B,) int64, drop_label (B,) bool (True = null class)
        -> logits (B, G*G, K + 1). The caller's tensors are never modified.

        `drop_label=None` means no label is dropped. (The official code then drops *every* label, a side effect of
        indexing with None, facts §12.4; pass `torch.ones(B, dtype=torch.bool)` for that.)
        """
        batch = tokens.shape[0]
        class_ids = labels + (self.codebook_size + 1)
        if drop_label is not None:
            class_ids = torch.where(drop_label, torch.full_like(class_ids, self.null_class), class_ids)
        ids = torch.cat([tokens.reshape(batch, -1), class_ids.view(batch, 1)], dim=1)
        x = self.tok_emb(ids) + self.pos_emb
        x = self.first_layer(x)
        x = self.transformer(x)
        x = self.last_layer(x)
        logits = torch.matmul(x, self.tok_emb.weight.T) + self.bias  # against all table rows, then sliced
        return logits[:, :self.seq_len, :self.codebook_size + 1]
