"""The original Taming-Transformers VQGAN (f16, 1024 x 256 codebook), for inference and evaluation only.

Differs from VQGAN+: conv biases, true 1x1 input shortcuts, self-attention at 16x16 and in the middle, 3 residual
blocks per decoder level, 1x1 `quant_conv` / `post_quant_conv`, explicit (0, 1, 0, 1) padding before the stride-2
convs, and [-1, 1] pixels inside (inputs and outputs of this class stay in [0, 1]).
`modeling.recompute.set_gradient_checkpointing(model)` recomputes each level (with its resampler) and the middle in backward.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from modeling.attention import scaled_dot_product_attention
from modeling.layers import group_norm
from modeling.quantizers.vector import VectorQuantizer
from modeling.recompute import RecomputedStages
from modeling.registry import register_builder
from modeling.tokenizer import SpatialTokenizer


def _conv3x3(cin: int, cout: int, stride: int = 1, padding: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=padding)


class TamingResnetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.norm1, self.conv1 = group_norm(in_channels), _conv3x3(in_channels, out_channels)
        self.norm2, self.conv2 = group_norm(out_channels), _conv3x3(out_channels, out_channels)
        self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))  # dropout 0 in the released model
        return (x if self.nin_shortcut is None else self.nin_shortcut(x)) + h


class TamingAttention(nn.Module):
    """Single-head self-attention over the h*w positions, 1x1-conv projections, residual."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = group_norm(channels)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(channels, channels, 1) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        b, c, hh, ww = x.shape
        q, k, v = (proj(h).reshape(b, 1, c, hh * ww).transpose(-1, -2) for proj in (self.q, self.k, self.v))
        out = scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(c)) v, (b, 1, hw, c)
        return x + self.proj_out(out.transpose(-1, -2).reshape(b, c, hh, ww))


class _Level(nn.Module):
    """One resolution level: `block` (residual blocks), `attn` (one per block, or empty), then the optional
    resampler the encoder / decoder attaches as `downsample` / `upsample`."""

    def __init__(self, in_channels: int, out_channels: int, num_blocks: int, attention: bool):
        super().__init__()
        widths = [in_channels] + [out_channels] * num_blocks
        self.block = nn.ModuleList(TamingResnetBlock(widths[i], widths[i + 1]) for i in range(num_blocks))
        self.attn = nn.ModuleList(TamingAttention(out_channels) for _ in range(num_blocks if attention else 0))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.block):
            h = block(h)
            if len(self.attn) > 0:
                h = self.attn[i](h)
        if hasattr(self, "downsample"):
            h = self.downsample(h)
        if hasattr(self, "upsample"):
            h = self.upsample(h)
        return h


class _Middle(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.block_1 = TamingResnetBlock(channels, channels)
        self.attn_1 = TamingAttention(channels)
        self.block_2 = TamingResnetBlock(channels, channels)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(h)))


class _Resample(nn.Module):
    """`conv` after x2 nearest upsampling, or a stride-2 conv after (0, 1, 0, 1) zero padding."""

    def __init__(self, channels: int, up: bool):
        super().__init__()
        self.up = up
        self.conv = _conv3x3(channels, channels) if up else _conv3x3(channels, channels, stride=2, padding=0)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.up:
            return self.conv(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.conv(F.pad(h, (0, 1, 0, 1)))


class TamingEncoder(RecomputedStages, nn.Module):
    def __init__(self, ch: int, ch_mult: Sequence[int], num_res_blocks: int, attn_resolutions: Sequence[int],
                 resolution: int, z_channels: int, in_channels: int = 3):
        super().__init__()
        widths = [ch * m for m in (1, *ch_mult)]
        self.conv_in = _conv3x3(in_channels, ch)
        self.down = nn.ModuleList()
        for i in range(len(ch_mult)):
            level = _Level(widths[i], widths[i + 1], num_res_blocks, resolution in attn_resolutions)
            if i != len(ch_mult) - 1:
                level.downsample = _Resample(widths[i + 1], up=False)
                resolution //= 2
            self.down.append(level)
        self.mid = _Middle(widths[-1])
        self.norm_out = group_norm(widths[-1])
        self.conv_out = _conv3x3(widths[-1], z_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = self.run_stage(level, h)
        return self.conv_out(F.silu(self.norm_out(self.run_stage(self.mid, h))))


class TamingDecoder(RecomputedStages, nn.Module):
    def __init__(self, ch: int, ch_mult: Sequence[int], num_res_blocks: int, attn_resolutions: Sequence[int],
                 resolution: int, z_channels: int, out_channels: int = 3):
        super().__init__()
        resolution //= 2 ** (len(ch_mult) - 1)
        width = ch * ch_mult[-1]
        self.conv_in = _conv3x3(z_channels, width)
        self.mid = _Middle(width)
        levels = []
        for i in reversed(range(len(ch_mult))):  # lowest resolution first; stored as up[i] = level i
            level = _Level(width, ch * ch_mult[i], num_res_blocks + 1, resolution in attn_resolutions)
            width = ch * ch_mult[i]
            if i != 0:
                level.upsample = _Resample(width, up=True)
                resolution *= 2
            levels.insert(0, level)
        self.up = nn.ModuleList(levels)
        self.norm_out = group_norm(width)
        self.conv_out = _conv3x3(width, out_channels)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.run_stage(self.mid, self.conv_in(z))
        for level in reversed(self.up):
            h = self.run_stage(level, h)
        return self.conv_out(F.silu(self.norm_out(h)))


class TamingVQGAN(SpatialTokenizer):
    """Taming VQGAN with the tokenizer interface of `VQGANPlusTokenizer` (images in [0, 1]).

    The defaults are the released ImageNet f16-1024 model; smaller values exist for tests.
    """

    def __init__(self, codebook_size: int = 1024, token_size: int = 256, ch: int = 128,
                 ch_mult: Sequence[int] = (1, 1, 2, 2, 4), num_res_blocks: int = 2,
                 attn_resolutions: Sequence[int] = (16,), resolution: int = 256, z_channels: int = 256):
        super().__init__()
        self.token_size = token_size
        self.encoder = TamingEncoder(ch, ch_mult, num_res_blocks, attn_resolutions, resolution, z_channels)
        self.decoder = TamingDecoder(ch, ch_mult, num_res_blocks, attn_resolutions, resolution, z_channels)
        self.quantize = VectorQuantizer(codebook_size, token_size, commitment_cost=0.25)
        self.quant_conv = nn.Conv2d(z_channels, token_size, 1)
        self.post_quant_conv = nn.Conv2d(token_size, z_channels, 1)
        self.downsample_factor = 2 ** (len(ch_mult) - 1)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """x (B, 3, H, W) in [0, 1] -> z_q (B, token_size, H/16, W/16) and the quantizer's info dict."""
        return self.quantize(self.quant_conv(self.encoder(x * 2.0 - 1.0)))

    def decode(self, z_q: torch.Tensor) -> torch.Tensor:
        """z_q (B, token_size, h, w) -> image (B, 3, H, W) in [0, 1] (unclamped)."""
        return (self.decoder(self.post_quant_conv(z_q)) + 1.0) / 2.0


@register_builder("tokenizer", "taming")
def _taming_from_config(vq, image_size: int) -> TamingVQGAN:
    """`model.vq_model` with `model_class: taming`: the fixed released architecture; only the codebook is read."""
    return TamingVQGAN(vq.codebook_size, vq.token_size)
