"""A MaskBit generator seen through the token-grid interface of the MaskGIT-pytorch / Halton samplers.

    grid_model = BitTokenGrid(maskbit_generator)      # model(tokens [B,G,G], labels, drop) -> logits [B, G*G, K+1]
    out = sample(grid_model, labels, version=2, scheduler="halton", seeds=[0, 1])

What it means for bit tokens: a MaskBit generator predicts each token as S independent groups of bits (split i a
categorical over V = 2^(bits/S) values, given the context). The samplers of this family decide whole tokens, so the
adapter presents the joint distribution over the K = 2^bits full tokens, whose logit for token k is the sum of the
split logits of k's bit groups; softmax of that sum is exactly the product of the split softmaxes, and guidance
and temperature (both linear in the logits) act on each split as they would on its own. A token is either fully
masked (every group is the generator's mask value) or fully known: unlike MaskBit's own sampler, which keeps or
re-masks bit groups separately, these samplers never leave a token half decided. The mask id K gets a logit of
-1e9 (the generator cannot predict "mask"), so it is never drawn.
"""
from __future__ import annotations

import math

import torch
from torch import nn

MASK_LOGIT = -1e9  # finite so that guidance (1 + w) * c - w * u stays finite


class BitTokenGrid(nn.Module):
    """Wraps a `MaskedTokenTransformer` (split tokens) as model(tokens [B, G, G] full indices with mask id K,
    labels [B], drop_label [B] bool) -> logits [B, G*G, K+1] float32."""

    def __init__(self, generator: nn.Module):
        super().__init__()
        side = math.isqrt(generator.seq_len)
        if side * side != generator.seq_len:
            raise ValueError(f"the MaskGIT-pytorch samplers need a square token grid; the generator has "
                             f"{generator.seq_len} tokens")
        self.generator, self.grid_size = generator, side
        self.codebook_size = 2 ** generator.bits

    def forward(self, tokens: torch.Tensor, labels: torch.Tensor, drop_label: torch.Tensor) -> torch.Tensor:
        batch, cells = tokens.shape[0], tokens.shape[1] * tokens.shape[2]
        flat = tokens.reshape(batch, cells)
        masked = (flat == self.codebook_size).unsqueeze(-1)
        split = self.generator.split_tokens(flat.clamp(0, self.codebook_size - 1))
        split = split.masked_fill(masked, self.generator.mask_token)
        logits = self.generator(split, labels, drop_label).float()  # [B, N, S, V]
        joint = logits[:, :, 0]
        for s in range(1, logits.shape[2]):  # full index = sum_s split_s * V^s (split 0 = low bits)
            joint = (logits[:, :, s].unsqueeze(-1) + joint.unsqueeze(-2)).flatten(-2)
        return torch.cat([joint, joint.new_full((batch, cells, 1), MASK_LOGIT)], dim=-1)
