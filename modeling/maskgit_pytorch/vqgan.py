"""The frozen VQGANs of the family, with the official interface (images in [-1, 1]) (facts §4).

    vqgan = build_vqgan({"kind": "taming"})        # v1: Taming VQGAN f16, 1024 x 256 (the project's TamingVQGAN)
    vqgan = build_vqgan({"kind": "llamagen"})      # v2: LlamaGen VQ-16, 16384 x 8, L2-normalised codes
    z_q, indices = vqgan.encode(x)                 # x (B, 3, H, W) in [-1, 1] -> (B, C, H/16, W/16), (B, H/16, W/16)
    image = vqgan.decode_code(indices)             # (B, 3, H, W), about [-1, 1], unclamped

They are also the project's tokenizers (`SpatialTokenizer`: token space, `decode_tokens` and `image_tokens` on
[0, 1] images), so pretokenization, on-the-fly training tokens and evaluation use them unchanged.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from modeling.layers import group_norm
from modeling.quantizers.vector import VectorQuantizer
from modeling.taming import TamingAttention, TamingResnetBlock, TamingVQGAN
from modeling.taming import _Resample as Resample
from modeling.tokenizer import SpatialTokenizer


class OfficialVQGANInterface:
    """encode / decode / decode_code on [-1, 1] images (the official calls), plus the project's [0, 1] tokenizer
    contract on top of them. A subclass provides `encoder`, `quant_conv`, `quantize`, `post_quant_conv`, `decoder`."""

    def encode(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """x (B, 3, H, W) in [-1, 1] -> (z_q (B, C, h, w), indices (B, h, w) int64)."""
        z_q, info = self.quantize(self.quant_conv(self.encoder(x)))
        return z_q, info["min_encoding_indices"]

    def decode(self, z_q: torch.Tensor) -> torch.Tensor:
        """z_q (B, C, h, w) -> image (B, 3, H, W) in about [-1, 1] (unclamped)."""
        return self.decoder(self.post_quant_conv(z_q))

    def decode_code(self, indices: torch.Tensor) -> torch.Tensor:
        """indices (B, h, w) -> image (B, 3, H, W) in about [-1, 1] (unclamped, as the official `decode_code`)."""
        return self.decode(self.quantize.get_codebook_entry(indices).permute(0, 3, 1, 2).contiguous())

    # ----------------------------------------------------------------- the project's tokenizer contract ([0, 1])
    def image_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) in [0, 1] -> indices (B, h, w) (what `modeling.tokenizer.tokenize` calls)."""
        return self.encode(images * 2.0 - 1.0)[1]

    def decode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, h*w) or (B, h, w) -> image (B, 3, H, W) in about [0, 1] (unclamped)."""
        return (super().decode_tokens(tokens) + 1.0) / 2.0

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, dict]:
        """x (B, 3, H, W) in [0, 1] -> (reconstruction in about [0, 1], {"min_encoding_indices": (B, h, w)})."""
        z_q, indices = self.encode(x * 2.0 - 1.0)
        return (self.decode(z_q) + 1.0) / 2.0, {"min_encoding_indices": indices}


class TamingF16VQGAN(OfficialVQGANInterface, TamingVQGAN):
    """The v1 VQGAN (taming `vqgan_imagenet_f16_1024`, key layout of the Lightning `last.ckpt` without `loss.*`):
    the project's `TamingVQGAN` network with the official [-1, 1] interface."""

    training_recipe = "none (a released, frozen model)"


class LlamaGenQuantizer(VectorQuantizer):
    """L2-normalised VQ (latents and codebook rows normalised at use; the codebook is also normalised at init), and
    the persistent FIFO `codebook_used` (65536 float32) of the last indices seen in training mode."""

    def __init__(self, codebook_size: int = 16384, token_size: int = 8, usage_window: int = 65536):
        super().__init__(codebook_size, token_size, commitment_cost=0.25, entropy_loss_weight=0.0,
                         use_l2_normalisation=True)
        with torch.no_grad():
            self.embedding.weight.copy_(F.normalize(self.embedding.weight, p=2, dim=-1))
        self.register_buffer("codebook_used", torch.zeros(usage_window))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, dict]:
        z_q, info = super().forward(z)
        if self.training:
            with torch.no_grad():
                indices = info["min_encoding_indices"].reshape(-1).to(self.codebook_used.dtype)
                n = min(len(indices), len(self.codebook_used))
                self.codebook_used.copy_(torch.cat([self.codebook_used[n:], indices[-n:]]))
        return z_q, info


class _LlamaGenLevel(nn.Module):
    """`res` blocks, their `attn` blocks (lowest resolution only), then `downsample` / `upsample` if any."""

    def __init__(self, in_channels: int, out_channels: int, num_blocks: int, attention: bool, resample: str = ""):
        super().__init__()
        widths = [in_channels] + [out_channels] * num_blocks
        self.res = nn.ModuleList(TamingResnetBlock(widths[i], widths[i + 1]) for i in range(num_blocks))
        self.attn = nn.ModuleList(TamingAttention(out_channels) for _ in range(num_blocks if attention else 0))
        if resample == "down":
            self.downsample = Resample(out_channels, up=False)
        elif resample == "up":
            self.upsample = Resample(out_channels, up=True)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.res):
            h = block(h)
            if len(self.attn) > 0:
                h = self.attn[i](h)
        if hasattr(self, "downsample"):
            h = self.downsample(h)
        if hasattr(self, "upsample"):
            h = self.upsample(h)
        return h


def _middle(channels: int) -> nn.Sequential:
    return nn.Sequential(TamingResnetBlock(channels, channels), TamingAttention(channels),
                         TamingResnetBlock(channels, channels))


class LlamaGenEncoder(nn.Module):
    def __init__(self, ch: int, ch_mult: Sequence[int], num_res_blocks: int, z_channels: int, in_channels: int = 3):
        super().__init__()
        widths = [ch * m for m in (1, *ch_mult)]
        last = len(ch_mult) - 1
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        self.conv_blocks = nn.ModuleList(
            _LlamaGenLevel(widths[i], widths[i + 1], num_res_blocks, attention=i == last,
                           resample="down" if i != last else "")
            for i in range(len(ch_mult)))
        self.mid = _middle(widths[-1])
        self.norm_out = group_norm(widths[-1])
        self.conv_out = nn.Conv2d(widths[-1], z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.conv_blocks:
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(self.mid(h))))


class LlamaGenDecoder(nn.Module):
    def __init__(self, ch: int, ch_mult: Sequence[int], num_res_blocks: int, z_channels: int, out_channels: int = 3):
        super().__init__()
        widths = [ch * m for m in (ch_mult[-1], *reversed(ch_mult))]  # lowest resolution first
        last = len(ch_mult) - 1
        self.conv_in = nn.Conv2d(z_channels, widths[0], 3, padding=1)
        self.mid = _middle(widths[0])
        self.conv_blocks = nn.ModuleList(
            _LlamaGenLevel(widths[i], widths[i + 1], num_res_blocks + 1, attention=i == 0,
                           resample="up" if i != last else "")
            for i in range(len(ch_mult)))
        self.norm_out = group_norm(widths[-1])
        self.conv_out = nn.Conv2d(widths[-1], out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for level in self.conv_blocks:
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class LlamaGenVQGAN(OfficialVQGANInterface, SpatialTokenizer):
    """LlamaGen VQ-16 (`vq_ds16_c2i.pt`): the v2 VQGAN. Defaults are the released model; smaller widths for tests."""

    training_recipe = "none (a released, frozen model)"

    def __init__(self, codebook_size: int = 16384, codebook_embed_dim: int = 8, ch: int = 128,
                 ch_mult: Sequence[int] = (1, 1, 2, 2, 4), num_res_blocks: int = 2, z_channels: int = 256):
        super().__init__()
        self.token_size = codebook_embed_dim
        self.downsample_factor = 2 ** (len(ch_mult) - 1)
        self.encoder = LlamaGenEncoder(ch, ch_mult, num_res_blocks, z_channels)
        self.decoder = LlamaGenDecoder(ch, ch_mult, num_res_blocks, z_channels)
        self.quantize = LlamaGenQuantizer(codebook_size, codebook_embed_dim)
        self.quant_conv = nn.Conv2d(z_channels, codebook_embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(codebook_embed_dim, z_channels, 1)
