"""GAN discriminators of the Stage-I training: the VQGAN+ discriminator and the pix2pix/Taming PatchGAN."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from modeling.cpu_bf16 import in_float32, runs_in_float32_on_cpu
from modeling.layers import Conv2dSame, same_padding
from modeling.registry import register_builder

BLUR_KERNELS = {3: (1, 2, 1), 4: (1, 3, 3, 1), 5: (1, 4, 6, 4, 1)}


class BlurDownsample(nn.Module):
    """Fixed binomial blur, then stride 2 (SAME padding), channel by channel.

    The normalised 2-D kernel (outer product of the 1-D taps, sum 1) is a persistent buffer `kernel` (1, 1, k, k).

    On a CPU under bf16 autocast with gradients, the depthwise convolution runs in float32: its bf16 backward is
    the slow CPU kernel (`modeling.cpu_bf16`).
    """

    def __init__(self, kernel_size: int = 4):
        super().__init__()
        if kernel_size not in BLUR_KERNELS:
            raise ValueError(f"blur_kernel_size must be one of {sorted(BLUR_KERNELS)}, got {kernel_size}.")
        taps = torch.tensor(BLUR_KERNELS[kernel_size], dtype=torch.float32)
        kernel = taps[None, :] * taps[:, None]
        self.register_buffer("kernel", (kernel / kernel.sum())[None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel.shape[-1]
        top, bottom = same_padding(x.shape[-2], k, 2)
        left, right = same_padding(x.shape[-1], k, 2)
        x = F.pad(x, (left, right, top, bottom))
        if runs_in_float32_on_cpu(x):
            return in_float32(self._blur, x)
        return self._blur(x)

    def _blur(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.kernel.to(x.dtype).expand(x.shape[1], -1, -1, -1)
        return F.conv2d(x, weight, stride=2, groups=x.shape[1])


class VQGANPlusDiscriminator(nn.Module):
    """(B, 3, H, W) -> (B, 1, 16, 16) real/fake logits (official `NLayerDiscriminatorv2`).

    conv5x5 -> `num_stages` x [conv3x3, /2 (blur or 2x2 average), GroupNorm(32, eps 1e-5), LeakyReLU(0.1)] with widths
    hidden x (1, 2, 4, 8, ...) -> adaptive max-pool to 16x16 -> conv1x1 -> LeakyReLU -> conv5x5 to one channel.
    All convs are SAME-padded with bias and keep PyTorch's default init.
    """

    def __init__(self, num_channels: int = 3, hidden_channels: int = 128, num_stages: int = 4,
                 blur_resample: bool = True, blur_kernel_size: int = 4):
        super().__init__()
        if num_stages < 1:
            raise ValueError(f"The discriminator needs at least one stage, got num_stages={num_stages}.")
        widths = [hidden_channels] + [hidden_channels * 2 ** i for i in range(num_stages)]
        self.block_in = nn.Sequential(Conv2dSame(num_channels, hidden_channels, kernel_size=5), _leaky_relu())
        self.blocks = nn.ModuleList(
            nn.Sequential(
                Conv2dSame(widths[i], widths[i + 1], kernel_size=3),
                BlurDownsample(blur_kernel_size) if blur_resample else nn.AvgPool2d(kernel_size=2, stride=2),
                nn.GroupNorm(32, widths[i + 1]),
                _leaky_relu(),
            )
            for i in range(num_stages))
        self.pool = AdaptiveMaxPool(16)
        self.to_logits = nn.Sequential(
            Conv2dSame(widths[-1], widths[-1], kernel_size=1), _leaky_relu(),
            Conv2dSame(widths[-1], 1, kernel_size=5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.block_in(x)
        for block in self.blocks:
            h = block(h)
        return self.to_logits(self.pool(h))


class AdaptiveMaxPool(nn.Module):
    """`nn.AdaptiveMaxPool2d((size, size))` with two exact shortcuts: where the input is already size x size every
    window is one pixel (the identity), and where size is a multiple of the input's sides every window is the one
    pixel nearest upsampling picks. The same forward bit for bit, and gradients up to float rounding; the general
    CPU kernel took 1.1 ms on the quickstart's (8, 64, 8, 8) features against 0.2 ms for the upsampling."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        if height == width == self.size:
            return x
        if self.size % height == 0 and self.size % width == 0:
            return F.interpolate(x, size=(self.size, self.size), mode="nearest")
        return F.adaptive_max_pool2d(x, self.size)


def _leaky_relu() -> nn.LeakyReLU:
    return nn.LeakyReLU(negative_slope=0.1)


class PatchGANDiscriminator(nn.Module):
    """The pix2pix / Taming PatchGAN ("Original"): 4x4 convs, BatchNorm, LeakyReLU(0.2); conv weights ~ N(0, 0.02).

    (B, 3, 256, 256) -> (B, 1, 30, 30) for num_stages=3. Not used by any shipped config.
    """

    def __init__(self, num_channels: int = 3, hidden_channels: int = 64, num_stages: int = 3):
        super().__init__()
        layers = [nn.Conv2d(num_channels, hidden_channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, num_stages + 1):
            prev, mult = mult, min(2 ** n, 8)
            stride = 2 if n < num_stages else 1
            layers += [nn.Conv2d(hidden_channels * prev, hidden_channels * mult, 4, stride=stride, padding=1,
                                 bias=False),
                       nn.BatchNorm2d(hidden_channels * mult), nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(hidden_channels * mult, 1, 4, stride=1, padding=1))
        self.main = nn.Sequential(*layers)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


@register_builder("discriminator", "VQGAN+Discriminator")
def _vqgan_plus_discriminator_from_config(d) -> VQGANPlusDiscriminator:
    return VQGANPlusDiscriminator(d.num_channels, d.hidden_channels, d.num_stages, d.blur_resample,
                                  d.blur_kernel_size)


@register_builder("discriminator", "Original")
def _patchgan_from_config(d) -> PatchGANDiscriminator:
    """`name: Original`: the pix2pix / Taming PatchGAN."""
    return PatchGANDiscriminator(d.num_channels, d.hidden_channels, d.num_stages)
