"""The two ViTs of the TiTok tokenizer: a pre-norm, sequence-first transformer block and the 1D encoder / decoder.

Parameter names follow the released TiTok checkpoints (`transformer.{i}.{ln_1, attn, ln_2, mlp.c_fc, mlp.c_proj}`,
`class_embedding`, `positional_embedding`, `latent_token_positional_embedding`, `mask_token`, `conv_out`, `ffn`), so
those state dicts load with `strict=True`.

    enc = TiTokEncoder(image_size=256, patch_size=16, width=768, num_layers=12, num_heads=12,
                       num_latent_tokens=64, token_size=12, is_legacy=True)
    z = enc(images, latent_tokens)            # (B, token_size, 1, N)
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Optional

import torch
from torch import nn

from modeling.recompute import RecomputedStages

# vit size name -> (width, layers, heads); head dim 64 in every size, MLP ratio 4
VIT_SIZES = {"small": (512, 8, 8), "base": (768, 12, 12), "large": (1024, 24, 16)}

# the legacy decoder head predicts logits over the MaskGIT-VQGAN codebook
MASKGIT_CODEBOOK_SIZE = 1024


def vit_dims(model_size: str, width: Optional[int] = None, num_layers: Optional[int] = None,
             num_heads: Optional[int] = None) -> tuple[int, int, int]:
    """(width, layers, heads) of a named ViT size, each overridable by an explicit value."""
    if model_size not in VIT_SIZES:
        raise ValueError(f"Unknown TiTok ViT size '{model_size}'; choose one of {sorted(VIT_SIZES)}.")
    default = VIT_SIZES[model_size]
    dims = tuple(d if v is None else int(v) for d, v in zip(default, (width, num_layers, num_heads)))
    if dims[0] % dims[2]:
        raise ValueError(f"ViT width {dims[0]} is not divisible by its number of heads {dims[2]}.")
    return dims


class ResidualAttentionBlock(nn.Module):
    """x + MHA(LN(x)), then x + MLP(LN(x)); input and output laid out (L, B, W) (sequence first).

    Attention is `nn.MultiheadAttention` (fused q/k/v projection, no mask, no dropout); the MLP is
    Linear(W, 4W) -> exact GELU -> Linear(4W, W).
    """

    def __init__(self, width: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, num_heads)
        hidden = int(width * mlp_ratio)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(width, hidden)), ("gelu", nn.GELU()), ("c_proj", nn.Linear(hidden, width))]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


def _scaled_randn(*shape: int, width: int) -> nn.Parameter:
    return nn.Parameter(width ** -0.5 * torch.randn(*shape))


def _run_blocks(vit: RecomputedStages, blocks: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
    """(B, L, W) through the sequence-first blocks and back; each block is a stage `vit` may recompute."""
    x = x.permute(1, 0, 2)
    for block in blocks:
        x = vit.run_stage(block, x)
    return x.permute(1, 0, 2)


class TiTokEncoder(RecomputedStages, nn.Module):
    """Image (B, 3, H, W) and the model's latent tokens (N, W) -> latent (B, C, 1, N).

    Sequence `[cls, patches (row-major), latent tokens]`; only the latent positions are kept. C = token_size, or
    2 * token_size for a VAE (mean and log-variance).
    `is_legacy=True` (the released L-32 / B-64 / S-128) feeds the (B, N, W) latents to the 1x1 head after a plain
    reshape to (B, W, N, 1), not a transpose: channel c at position n reads flat element c*N + n of the row-major
    (N, W) block. Their weights were trained that way.
    """

    def __init__(self, *, image_size: int, patch_size: int, width: int, num_layers: int, num_heads: int,
                 num_latent_tokens: int, token_size: int, is_legacy: bool = True, quantize_mode: str = "vq"):
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image size {image_size} is not divisible by the encoder patch size {patch_size}.")
        self.image_size, self.patch_size, self.width = image_size, patch_size, width
        self.grid_size = image_size // patch_size
        self.num_latent_tokens = num_latent_tokens
        self.is_legacy = is_legacy
        self.out_channels = 2 * token_size if quantize_mode == "vae" else token_size
        self.class_embedding = _scaled_randn(1, width, width=width)
        self.positional_embedding = _scaled_randn(self.grid_size ** 2 + 1, width, width=width)
        self.latent_token_positional_embedding = _scaled_randn(num_latent_tokens, width, width=width)
        self.patch_embed = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=True)
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = nn.ModuleList(ResidualAttentionBlock(width, num_heads) for _ in range(num_layers))
        self.ln_post = nn.LayerNorm(width)
        self.conv_out = nn.Conv2d(width, self.out_channels, kernel_size=1, bias=True)

    def forward(self, pixel_values: torch.Tensor, latent_tokens: torch.Tensor) -> torch.Tensor:
        batch = pixel_values.shape[0]
        x = self.patch_embed(pixel_values)
        if x.shape[-2:] != (self.grid_size, self.grid_size):
            raise ValueError(f"TiTok encoder built for {self.image_size}px images got {tuple(pixel_values.shape)}.")
        x = x.reshape(batch, self.width, -1).permute(0, 2, 1)  # (B, grid^2, W), row-major patches
        cls = self.class_embedding.to(x.dtype) + x.new_zeros(batch, 1, self.width)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        latents = latent_tokens.to(x.dtype).unsqueeze(0).expand(batch, -1, -1)
        latents = latents + self.latent_token_positional_embedding.to(x.dtype)
        x = self.ln_pre(torch.cat([x, latents], dim=1))
        x = _run_blocks(self, self.transformer, x)
        x = self.ln_post(x[:, 1 + self.grid_size ** 2:])  # (B, N, W)
        n = x.shape[1]
        if self.is_legacy:
            x = x.reshape(batch, self.width, n, 1)  # memory order kept: mixes features of different tokens
        else:
            x = x.permute(0, 2, 1).unsqueeze(-1)
        return self.conv_out(x).reshape(batch, self.out_channels, 1, n)


class PatchesToPixels(nn.Module):
    """(B, P*P*3, h, w) -> (B, 3, h*P, w*P); the channel index is (row-in-patch, column-in-patch, colour), colour
    fastest (unlike `F.pixel_shuffle`, whose colour index is slowest)."""

    def __init__(self, patch_size: int):
        super().__init__()
        self.patch_size = patch_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        p = self.patch_size
        return x.reshape(b, p, p, 3, h, w).permute(0, 3, 4, 1, 5, 2).reshape(b, 3, h * p, w * p)


class TiTokDecoder(RecomputedStages, nn.Module):
    """Latent (B, C, 1, N) -> legacy: MaskGIT-VQGAN code logits (B, 1024, h, w); else pixels (B, 3, H, W).

    Queries: one learned mask token per grid cell; sequence `[cls, mask tokens, latents]`; the latents get their
    own positional table after `decoder_embed`; only the mask-token positions are kept.
    """

    def __init__(self, *, image_size: int, patch_size: int, width: int, num_layers: int, num_heads: int,
                 num_latent_tokens: int, token_size: int, is_legacy: bool = True):
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image size {image_size} is not divisible by the decoder patch size {patch_size}.")
        self.image_size, self.patch_size, self.width = image_size, patch_size, width
        self.grid_size = image_size // patch_size
        self.num_latent_tokens = num_latent_tokens
        self.is_legacy = is_legacy
        self.class_embedding = _scaled_randn(1, width, width=width)
        self.positional_embedding = _scaled_randn(self.grid_size ** 2 + 1, width, width=width)
        self.mask_token = _scaled_randn(1, 1, width, width=width)
        self.latent_token_positional_embedding = _scaled_randn(num_latent_tokens, width, width=width)
        self.decoder_embed = nn.Linear(token_size, width, bias=True)
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = nn.ModuleList(ResidualAttentionBlock(width, num_heads) for _ in range(num_layers))
        self.ln_post = nn.LayerNorm(width)
        if is_legacy:
            self.ffn = nn.Sequential(nn.Conv2d(width, 2 * width, 1, bias=True), nn.Tanh(),
                                     nn.Conv2d(2 * width, MASKGIT_CODEBOOK_SIZE, 1, bias=True))
            self.conv_out = nn.Identity()
        else:
            self.ffn = nn.Sequential(nn.Conv2d(width, patch_size * patch_size * 3, 1, bias=True),
                                     PatchesToPixels(patch_size))
            self.conv_out = nn.Conv2d(3, 3, kernel_size=3, padding=1, bias=True)

    def forward(self, z_q: torch.Tensor) -> torch.Tensor:
        batch, channels, height, n = z_q.shape
        x = z_q.reshape(batch, channels * height, n).permute(0, 2, 1)  # (B, N, C)
        x = self.decoder_embed(x)
        x = x + self.latent_token_positional_embedding[:n].to(x.dtype)
        cells = self.grid_size ** 2
        queries = self.mask_token.repeat(batch, cells, 1).to(x.dtype)
        cls = self.class_embedding.to(x.dtype) + x.new_zeros(batch, 1, self.width)
        queries = torch.cat([cls, queries], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.ln_pre(torch.cat([queries, x], dim=1))
        x = _run_blocks(self, self.transformer, x)
        x = self.ln_post(x[:, 1:1 + cells])  # (B, grid^2, W)
        x = x.permute(0, 2, 1).reshape(batch, self.width, self.grid_size, self.grid_size)
        return self.conv_out(self.ffn(x))
