"""Lookup-free quantization (LFQ): every latent channel is one bit, quantized by its sign.

Bit i of a token has weight 2^i (least significant bit first); +1 means 1 and -1 means 0; an exact 0 becomes -1.
"""
from __future__ import annotations

import torch
from torch import nn

from modeling.quantizers.entropy import DEFAULT_CHUNK_ELEMENTS, lfq_entropy


def indices_to_bits(indices: torch.Tensor, num_bits: int) -> torch.Tensor:
    """Integer tokens (...) -> float bits (..., num_bits) in {-1, +1}, LSB first."""
    powers = 2 ** torch.arange(num_bits, device=indices.device, dtype=torch.int64)
    return ((indices.long()[..., None] & powers) != 0).float() * 2.0 - 1.0


def bits_to_indices(bits: torch.Tensor) -> torch.Tensor:
    """Bits (..., K), positive meaning 1, -> int64 tokens (...)."""
    powers = 2 ** torch.arange(bits.shape[-1], device=bits.device, dtype=torch.int64)
    return ((bits > 0).long() * powers).sum(-1)


def _at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


class LookupFreeQuantizer(nn.Module):
    """Sign quantizer with commitment and entropy losses (no learnable parameters).

    forward: z (B, K, H, W) -> z_q (B, K, H, W) with straight-through gradients, and an info dict with
    `quantizer_loss, commitment_loss, entropy_loss, per_sample_entropy, avg_entropy` (scalars; the entropy terms are
    computed only in training mode with a non-zero weight, else zero), `min_encoding_indices` (B, H, W) int64 and
    `bit_usage` (K,), the detached fraction of +1 per bit (a value near 0 or 1 flags a dead bit).
    `avg_entropy` is already multiplied by `entropy_gamma`, as in the official code.
    """

    is_lookup_free = True  # tokens are bit vectors

    def __init__(self, token_bits: int, commitment_cost: float = 0.25, entropy_loss_weight: float = 0.02,
                 entropy_loss_temperature: float = 0.01, entropy_gamma: float = 1.0,
                 distributed_entropy: bool = False, max_chunk_elements: int = DEFAULT_CHUNK_ELEMENTS):
        super().__init__()
        self.token_size = token_bits
        self.codebook_size = 2 ** token_bits
        self.commitment_cost = commitment_cost
        self.entropy_loss_weight = entropy_loss_weight
        self.entropy_loss_temperature = entropy_loss_temperature
        self.entropy_gamma = entropy_gamma
        self.distributed_entropy = distributed_entropy
        self.max_chunk_elements = max_chunk_elements
        # Persistent buffers: the released checkpoints contain them, and strict loading needs them.
        self.register_buffer("bits_to_indices", 2 ** torch.arange(token_bits, dtype=torch.int32))
        self.register_buffer("codebook", indices_to_bits(torch.arange(self.codebook_size), token_bits))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, dict]:
        keep_channels_last = z.is_contiguous(memory_format=torch.channels_last) and not z.is_contiguous()
        z = _at_least_fp32(z).permute(0, 2, 3, 1).contiguous()  # (B, H, W, K)
        z_q = torch.where(z > 0, 1.0, -1.0).to(z.dtype)
        commitment_loss = self.commitment_cost * torch.mean((z_q.detach() - z) ** 2)

        per_sample_entropy, avg_entropy, entropy_loss = (z.new_zeros(()) for _ in range(3))
        if self.training and self.entropy_loss_weight != 0.0:
            per_sample_entropy, avg_entropy = lfq_entropy(z, self.entropy_loss_temperature, self.entropy_gamma,
                                                          self.distributed_entropy, self.max_chunk_elements)
            entropy_loss = self.entropy_loss_weight * (per_sample_entropy - avg_entropy)

        info = dict(
            quantizer_loss=commitment_loss + entropy_loss,
            commitment_loss=commitment_loss,
            entropy_loss=entropy_loss,
            per_sample_entropy=per_sample_entropy,
            avg_entropy=avg_entropy,
            min_encoding_indices=bits_to_indices(z_q),
            bit_usage=(z_q > 0).flatten(0, 2).float().mean(0),
        )
        z_q = z + (z_q - z).detach()  # straight-through estimator
        z_q = z_q.permute(0, 3, 1, 2)
        return (z_q if keep_channels_last else z_q.contiguous()), info

    def get_codebook_entry(self, indices: torch.Tensor) -> torch.Tensor:
        """Tokens (...) -> bits (..., K) in {-1, +1}."""
        return indices_to_bits(indices, self.token_size)

    def extra_repr(self) -> str:
        return (f"token_bits={self.token_size}, commitment_cost={self.commitment_cost}, "
                f"entropy_loss_weight={self.entropy_loss_weight}, temperature={self.entropy_loss_temperature}, "
                f"gamma={self.entropy_gamma}, distributed_entropy={self.distributed_entropy}")
