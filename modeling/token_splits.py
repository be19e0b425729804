"""Factorised tokens: a K-bit token index split into `splits` groups of K/splits bits (split 0 = low bits).

The generator predicts each group as its own categorical over V = 2^(K/splits) values, with V as the mask id.
"""
from __future__ import annotations

import torch


def _bits_per_split(bits: int, splits: int) -> int:
    if splits < 1 or bits % splits:
        raise ValueError(f"token bits ({bits}) must be divisible by codebook_splits ({splits})")
    return bits // splits


def split_tokens(tokens: torch.Tensor, bits: int, splits: int) -> torch.Tensor:
    """Full indices (...,) in [0, 2^bits) -> split indices (..., splits), int64; split i holds bits [i*b, (i+1)*b)."""
    width = _bits_per_split(bits, splits)
    shifts = torch.arange(splits, device=tokens.device) * width
    return (tokens.long().unsqueeze(-1) >> shifts) & ((1 << width) - 1)


def combine_tokens(split: torch.Tensor, bits: int, splits: int) -> torch.Tensor:
    """Split indices (..., splits) -> full indices (...,), int64 (the official helper returns float32)."""
    width = _bits_per_split(bits, splits)
    if split.shape[-1] != splits:
        raise ValueError(f"expected {splits} splits in the last dimension, got shape {tuple(split.shape)}")
    shifts = torch.arange(splits, device=split.device) * width
    return (split.long() << shifts).sum(-1)


def split_tokens_to_bits(split: torch.Tensor, bit_weights: torch.Tensor, mask_token: int) -> torch.Tensor:
    """Split indices (B, N, S) -> the LFQ latent (B, N, S*b) in {-1, +1}, with masked groups all zero.

    `bit_weights` is (b,) = [1, 2, ..., 2^(b-1)] (LSB first); groups are concatenated in split order, which is
    exactly the channel order of the tokenizer's quantized latent.
    """
    bits = (split.unsqueeze(-1) & bit_weights) != 0  # (B, N, S, b)
    signs = bits.float() * 2.0 - 1.0
    signs = signs.masked_fill((split == mask_token).unsqueeze(-1), 0.0)
    return signs.flatten(-2)
