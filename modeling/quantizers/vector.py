"""Vector quantization with a learned codebook (the official `SimpleVectorizer`).

Nearest code by squared Euclidean distance; the codebook learns only through the codebook loss (no EMA updates,
no dead-code restarts).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from modeling.quantizers.entropy import softmax_entropy


class VectorQuantizer(nn.Module):
    """z (B, C, H, W) -> nearest codebook rows (B, C, H, W) with straight-through gradients.

    The info dict holds `quantizer_loss` (commitment + codebook + entropy), `commitment_loss`, `codebook_loss`,
    `entropy_loss`, `per_sample_entropy`, `avg_entropy` (scalars; entropy terms only in training mode with a non-zero
    weight, affinity = -distance) and `min_encoding_indices` (B, H, W) int64.
    """

    def __init__(self, codebook_size: int = 1024, token_size: int = 256, commitment_cost: float = 0.25,
                 entropy_loss_weight: float = 0.0, entropy_loss_temperature: float = 0.01,
                 entropy_gamma: float = 1.0, use_l2_normalisation: bool = False, distributed_entropy: bool = False):
        super().__init__()
        self.codebook_size = codebook_size
        self.token_size = token_size
        self.commitment_cost = commitment_cost
        self.entropy_loss_weight = entropy_loss_weight
        self.entropy_loss_temperature = entropy_loss_temperature
        self.entropy_gamma = entropy_gamma
        self.use_l2_normalisation = use_l2_normalisation
        self.distributed_entropy = distributed_entropy
        self.embedding = nn.Embedding(codebook_size, token_size)
        nn.init.uniform_(self.embedding.weight, -1.0 / codebook_size, 1.0 / codebook_size)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, dict]:
        keep_channels_last = z.is_contiguous(memory_format=torch.channels_last) and not z.is_contiguous()
        if z.dtype in (torch.float16, torch.bfloat16):
            z = z.float()
        z = z.permute(0, 2, 3, 1).contiguous()  # (B, H, W, C)
        codebook = self.embedding.weight
        if self.use_l2_normalisation:
            z, codebook = F.normalize(z, dim=-1), F.normalize(codebook, dim=-1)
        z_flat = z.reshape(-1, z.shape[-1])
        # |z|^2 + |e|^2 - 2 z.e in the official order (same argmin ties), kept in fp32 under autocast
        with torch.autocast(z.device.type, enabled=False):
            distances = (z_flat.pow(2).sum(1, keepdim=True) + codebook.pow(2).sum(1)
                         - 2 * torch.einsum("bd,dn->bn", z_flat, codebook.T))
        indices = distances.argmin(dim=1)
        z_q = self.get_codebook_entry(indices).view(z.shape)

        commitment_loss = self.commitment_cost * torch.mean((z_q.detach() - z) ** 2)
        codebook_loss = torch.mean((z_q - z.detach()) ** 2)
        per_sample_entropy, avg_entropy, entropy_loss = (z.new_zeros(()) for _ in range(3))
        if self.training and self.entropy_loss_weight != 0.0:
            per_sample_entropy, avg_entropy = softmax_entropy(-distances, self.entropy_loss_temperature,
                                                              self.entropy_gamma, self.distributed_entropy)
            entropy_loss = self.entropy_loss_weight * (per_sample_entropy - avg_entropy)

        info = dict(
            quantizer_loss=commitment_loss + codebook_loss + entropy_loss,
            commitment_loss=commitment_loss,
            codebook_loss=codebook_loss,
            entropy_loss=entropy_loss,
            per_sample_entropy=per_sample_entropy,
            avg_entropy=avg_entropy,
            min_encoding_indices=indices.view(z.shape[:3]),
        )
        z_q = z + (z_q - z).detach()  # straight-through estimator
        z_q = z_q.permute(0, 3, 1, 2)
        return (z_q if keep_channels_last else z_q.contiguous()), info

    def get_codebook_entry(self, indices: torch.Tensor) -> torch.Tensor:
        """Tokens (...) -> codebook rows (..., C), L2-normalised when the quantizer normalises."""
        z_q = self.embedding(indices.long())
        return F.normalize(z_q, dim=-1) if self.use_l2_normalisation else z_q

    def extra_repr(self) -> str:
        return (f"codebook_size={self.codebook_size}, token_size={self.token_size}, "
                f"commitment_cost={self.commitment_cost}, entropy_loss_weight={self.entropy_loss_weight}, "
                f"use_l2_normalisation={self.use_l2_normalisation}")
