"""Convolutional building blocks of the VQGAN+ encoder and decoder.

Module and attribute names follow the official checkpoints (`res_blocks`, `nin_shortcut`, `down_conv`,
`upsample_conv`) so that released weights load without renaming.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow-style SAME padding (before, after) for one spatial dimension; the odd pixel goes after."""
    total = max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class Conv2dSame(nn.Conv2d):
    """Conv2d with SAME padding computed from the input size, as in TensorFlow.

    A 3x3 stride-2 conv on an even size pads 0 before and 1 after. Symmetric cases use the conv's own zero padding
    instead of an explicit `F.pad` copy (identical values, one memory pass fewer).

    Why not timm's `Conv2dSame`: its forward is bitwise identical (same keys, same padding), but it always pads
    explicitly: no faster anywhere and slower at stride 1 on CPU (`scripts/benchmark_conv_same.py`), and its input
    gradients differ in the last bits under channels_last with symmetric padding.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        top, bottom = same_padding(x.shape[-2], kh, sh, dh)
        left, right = same_padding(x.shape[-1], kw, sw, dw)
        if top == bottom and left == right:
            return F.conv2d(x, self.weight, self.bias, self.stride, (top, left), self.dilation, self.groups)
        x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def group_norm(channels: int, eps: float = 1e-6) -> nn.GroupNorm:
    """GroupNorm with 32 groups (eps 1e-6 in the autoencoder)."""
    if channels % 32 != 0:
        raise ValueError(f"GroupNorm(32) needs a channel count divisible by 32, got {channels}. "
                         f"Choose hidden_channels and channel_mult so that every width is a multiple of 32.")
    return nn.GroupNorm(32, channels, eps=eps, affine=True)


class ResidualBlock(nn.Module):
    """GN -> SiLU -> conv3x3 -> GN -> SiLU -> conv3x3, plus a skip connection.

    When the width changes there is no skip from the input: the block returns `h + nin_shortcut(h)`, a bias-free
    (out, out) 1x1 conv of its own output. This matches the MaskGIT/open-muse VQGAN that the checkpoints come from.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = Conv2dSame(in_channels, out_channels, kernel_size=3, bias=False)
        self.norm2 = group_norm(out_channels)
        self.conv2 = Conv2dSame(out_channels, out_channels, kernel_size=3, bias=False)
        self.nin_shortcut = (Conv2dSame(out_channels, out_channels, kernel_size=1, bias=False)
                             if in_channels != out_channels else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        residual = x if self.nin_shortcut is None else self.nin_shortcut(h)
        return h + residual


def _blocks(in_channels: int, out_channels: int, num_blocks: int) -> nn.ModuleList:
    """`num_blocks` residual blocks; the first one changes the width."""
    widths = [in_channels] + [out_channels] * num_blocks
    return nn.ModuleList(ResidualBlock(widths[i], widths[i + 1]) for i in range(num_blocks))


class ResidualStage(nn.Module):
    """Residual blocks at a fixed resolution."""

    def __init__(self, in_channels: int, out_channels: int, num_blocks: int):
        super().__init__()
        self.res_blocks = _blocks(in_channels, out_channels, num_blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.res_blocks:
            x = block(x)
        return x


class DownsamplingStage(ResidualStage):
    """Residual blocks, then /2: a 3x3 stride-2 SAME conv (`down_conv`) or 2x2 average pooling."""

    def __init__(self, in_channels: int, out_channels: int, num_blocks: int, sample_with_conv: bool):
        super().__init__(in_channels, out_channels, num_blocks)
        self.down_conv = Conv2dSame(out_channels, out_channels, kernel_size=3, stride=2) if sample_with_conv else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward(x)
        return F.avg_pool2d(x, kernel_size=2, stride=2) if self.down_conv is None else self.down_conv(x)


class UpsamplingStage(ResidualStage):
    """Residual blocks, then nearest-neighbour x2 and a 3x3 SAME conv (`upsample_conv`)."""

    def __init__(self, in_channels: int, out_channels: int, num_blocks: int):
        super().__init__(in_channels, out_channels, num_blocks)
        self.upsample_conv = Conv2dSame(out_channels, out_channels, kernel_size=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward(x)
        return self.upsample_conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
