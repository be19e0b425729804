"""What every 2D (spatial-grid) tokenizer offers, whatever its family: the token space it owns and token decoding.

A subclass sets `self.quantize` (with `codebook_size` and `get_codebook_entry`), `self.downsample_factor`, and
implements `encode(x) -> (z_q, info)` and `decode(z_q) -> image`. Consumers (the generator builder, the
evaluators, pretokenization) read `token_bits`, `codebook_size` and `token_grid(image_size)` from here and nowhere
else.
"""
from __future__ import annotations

import hashlib
import math
from typing import Optional, Tuple

import torch
from torch import nn

from utils.config import ConfigError


class SpatialTokenizer(nn.Module):
    downsample_factor: int  # pixels per token along each side

    @property
    def codebook_size(self) -> int:
        return self.quantize.codebook_size

    @property
    def token_bits(self) -> Optional[int]:
        """log2(codebook_size) when it is a power of two (always for LFQ), else None."""
        bits = math.log2(self.codebook_size)
        return int(bits) if bits.is_integer() else None

    @property
    def is_bit_tokenizer(self) -> bool:
        """True for lookup-free quantization, whose tokens are bit vectors (per-bit usage is meaningful)."""
        return bool(getattr(self.quantize, "is_lookup_free", False))

    def token_grid(self, image_size: int) -> Tuple[int, int]:
        """(h, w) of the token grid of a square `image_size` image."""
        if image_size % self.downsample_factor:
            raise ConfigError(f"image size {image_size} is not divisible by the tokenizer's downsampling factor "
                             f"{self.downsample_factor}; use a multiple of it (dataset.preprocessing.resolution).")
        side = image_size // self.downsample_factor
        return side, side

    def get_last_layer(self) -> torch.Tensor:
        """Weight of the decoder's last conv (for the adaptive GAN weight)."""
        return self.decoder.conv_out.weight

    def decode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, h*w) row-major with a square grid, or (B, h, w) -> image (B, 3, H, W)."""
        if tokens.dim() == 2:
            side = math.isqrt(tokens.shape[1])
            if side * side != tokens.shape[1]:
                raise ValueError(f"decode_tokens got {tokens.shape[1]} tokens per image, which is not a square "
                                 f"grid; pass tokens shaped (B, h, w) for non-square latents.")
            tokens = tokens.reshape(tokens.shape[0], side, side)
        elif tokens.dim() != 3:
            raise ValueError(f"decode_tokens expects tokens of shape (B, h*w) or (B, h, w), got "
                             f"{tuple(tokens.shape)}.")
        return self.decode(self.quantize.get_codebook_entry(tokens).permute(0, 3, 1, 2).contiguous())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """x (B, 3, H, W) in [0, 1] -> (reconstruction (B, 3, H, W), quantizer info)."""
        z_q, info = self.encode(x)
        return self.decode(z_q), info


@torch.no_grad()
def tokenize(tokenizer: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Images (B, 3, R, R) in [0, 1] -> token indices (B, h*w) int64 (row-major), in fp32 outside any autocast."""
    with torch.autocast(images.device.type, enabled=False):
        if hasattr(tokenizer, "image_tokens"):  # tokenizers whose `encode` keeps an official interface
            indices = tokenizer.image_tokens(images.float())
        else:
            indices = tokenizer.encode(images.float())[1]["min_encoding_indices"]
    return indices.reshape(indices.shape[0], -1).long()


def tokenizer_fingerprint(tokenizer: nn.Module) -> str:
    """SHA-256 of the tokenizer's state dict (names and raw tensor bytes): identifies the weights whatever the
    file format or name they were loaded from."""
    digest = hashlib.sha256()
    for name, tensor in sorted(tokenizer.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()
