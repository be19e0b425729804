"""The MaskGIT-VQGAN (f16, 1024 x 256 codebook) under the open-muse key names TiTok uses.

It is the same network as MaskBit's MaskGIT tokenizer (`modeling.vqgan_plus` with `legacy_decoder=True`), but the
released `maskgit-vqgan-imagenet-f16-256.bin` names its stages `down.L.block.B` / `mid.B` / `up.L.block.B`, so this
module mirrors that layout with the project's residual block, SAME conv and GroupNorm.

Roles in TiTok: frozen stage-1 target (`encode` -> proxy codes, `decode` -> clamped image), and, as
`pixel_quantize` / `pixel_decoder`, the pixel decoder of the stage-2 TiTok.

    vqgan = build_maskgit_vqgan()
    codes = vqgan.encode(images)             # (B, 256) int64, row-major 16x16
    images = vqgan.decode(codes)             # (B, 3, 256, 256) in [0, 1]
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from modeling.layers import Conv2dSame, ResidualBlock, group_norm
from modeling.recompute import RecomputedStages
from modeling.tokenizer import SpatialTokenizer

CHANNEL_MULT = (1, 1, 2, 2, 4)


def _blocks(in_channels: int, out_channels: int, num_blocks: int) -> nn.ModuleList:
    widths = [in_channels] + [out_channels] * num_blocks
    return nn.ModuleList(ResidualBlock(widths[i], widths[i + 1]) for i in range(num_blocks))


def _run_in_order(blocks: nn.ModuleList, h: torch.Tensor) -> torch.Tensor:
    for block in blocks:
        h = block(h)
    return h


class _DownLevel(nn.Module):
    """Residual blocks, then 2x2 average pooling unless it is the last level (no parameters for the pooling)."""

    def __init__(self, in_channels: int, out_channels: int, num_blocks: int, downsample: bool):
        super().__init__()
        self.block = _blocks(in_channels, out_channels, num_blocks)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.block:
            x = block(x)
        return F.avg_pool2d(x, kernel_size=2, stride=2) if self.downsample else x


class _UpLevel(nn.Module):
    """Residual blocks, then (except at full resolution) nearest x2 and a 3x3 SAME conv `upsample_conv`."""

    def __init__(self, in_channels: int, out_channels: int, num_blocks: int, upsample: bool):
        super().__init__()
        self.block = _blocks(in_channels, out_channels, num_blocks)
        if upsample:
            self.upsample_conv = Conv2dSame(out_channels, out_channels, kernel_size=3)
        else:
            self.upsample_conv = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.block:
            x = block(x)
        if self.upsample_conv is None:
            return x
        return self.upsample_conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class MaskGITEncoder(nn.Module):
    """(B, 3, H, W) in [0, 1] -> (B, z_channels, H/16, W/16)."""

    def __init__(self, hidden_channels: int = 128, channel_mult: Sequence[int] = CHANNEL_MULT,
                 num_res_blocks: int = 2, z_channels: int = 256, num_channels: int = 3):
        super().__init__()
        widths = [hidden_channels * m for m in (1, *channel_mult)]
        last = len(channel_mult) - 1
        self.conv_in = Conv2dSame(num_channels, hidden_channels, kernel_size=3, bias=False)
        self.down = nn.ModuleList(_DownLevel(widths[i], widths[i + 1], num_res_blocks, downsample=i < last)
                                  for i in range(len(channel_mult)))
        self.mid = _blocks(widths[-1], widths[-1], num_res_blocks)
        self.norm_out = group_norm(widths[-1])
        self.conv_out = Conv2dSame(widths[-1], z_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = level(h)
        h = _run_in_order(self.mid, h)
        return self.conv_out(F.silu(self.norm_out(h)))


class MaskGITDecoder(RecomputedStages, nn.Module):
    """(B, z_channels, h, w) -> (B, 3, 16h, 16w), no output activation. `up[i]` is level i (up[0] at full
    resolution); the levels run from the last one down to `up[0]`. Trained as TiTok's stage-2 pixel decoder, whose
    gradient checkpointing recomputes the mid blocks and each level."""

    def __init__(self, hidden_channels: int = 128, channel_mult: Sequence[int] = CHANNEL_MULT,
                 num_res_blocks: int = 2, z_channels: int = 256, num_channels: int = 3):
        super().__init__()
        widths = [hidden_channels * m for m in (*channel_mult, channel_mult[-1])]
        self.conv_in = Conv2dSame(z_channels, widths[-1], kernel_size=3)
        self.mid = _blocks(widths[-1], widths[-1], num_res_blocks)
        self.up = nn.ModuleList(_UpLevel(widths[i + 1], widths[i], num_res_blocks, upsample=i > 0)
                                for i in range(len(channel_mult)))
        self.norm_out = group_norm(widths[0])
        self.conv_out = Conv2dSame(widths[0], num_channels, kernel_size=3)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.run_stage(_run_in_order, self.mid, self.conv_in(z))
        for level in reversed(self.up):
            h = self.run_stage(level, h)
        return self.conv_out(F.silu(self.norm_out(h)))


class MaskGITQuantizer(nn.Module):
    """Nearest-code lookup without normalisation; codes come back flat (B, h*w), row-major."""

    def __init__(self, codebook_size: int = 1024, token_size: int = 256, commitment_cost: float = 0.25):
        super().__init__()
        self.codebook_size, self.token_size, self.commitment_cost = codebook_size, token_size, commitment_cost
        self.embedding = nn.Embedding(codebook_size, token_size)

    def forward(self, z: torch.Tensor, return_loss: bool = False):
        """z (B, C, h, w) -> (z_q (B, C, h, w), indices (B, h*w)[, loss])."""
        b, c, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, c)
        codebook = self.embedding.weight
        # |z|^2 + |e|^2 - 2 z e^T in one fused addmm
        distances = torch.addmm(flat.pow(2).sum(1, keepdim=True) + codebook.pow(2).sum(1), flat, codebook.t(),
                                beta=1.0, alpha=-2.0)
        indices = distances.argmin(dim=1)
        one_hot = F.one_hot(indices, self.codebook_size).to(codebook.dtype)
        z_q = (one_hot @ codebook).view(b, h, w, c).permute(0, 3, 1, 2).contiguous()
        indices = indices.view(b, h * w)
        if not return_loss:
            return z_q, indices
        loss = (self.commitment_cost * torch.mean((z_q.detach() - z) ** 2)
                + torch.mean((z_q - z.detach()) ** 2))
        return z + (z_q - z).detach(), indices, loss

    def get_codebook_entry(self, indices: torch.Tensor) -> torch.Tensor:
        """Codes (B, h*w) with a square grid -> (B, C, h, w)."""
        b, n = indices.shape
        side = math.isqrt(n)
        if side * side != n:
            raise ValueError(f"MaskGIT-VQGAN codes must form a square grid; got {n} per image.")
        z_q = self.embedding(indices.long())
        return z_q.view(b, side, side, -1).permute(0, 3, 1, 2).contiguous()


class MaskGITVQGAN(SpatialTokenizer):
    """Encoder -> quantizer -> decoder; `encode` gives codes (B, h*w), `decode` clamps the image to [0, 1].

    Both run without gradients (the model is a frozen target / reference). The token space (`codebook_size`,
    `token_bits`, `token_grid`) comes from `SpatialTokenizer`; unlike the project's tokenizers, `encode` and `decode`
    take and give codes, as the official module does.
    """

    downsample_factor = 16
    training_recipe = "none (a released, frozen model)"

    def __init__(self, hidden_channels: int = 128, channel_mult: Sequence[int] = CHANNEL_MULT,
                 num_res_blocks: int = 2, z_channels: int = 256, codebook_size: int = 1024):
        super().__init__()
        self.downsample_factor = 2 ** (len(channel_mult) - 1)
        self.encoder = MaskGITEncoder(hidden_channels, channel_mult, num_res_blocks, z_channels)
        self.decoder = MaskGITDecoder(hidden_channels, channel_mult, num_res_blocks, z_channels)
        self.quantize = MaskGITQuantizer(codebook_size, z_channels)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 3, H, W) in [0, 1] -> codes (B, h*w) int64."""
        return self.quantize(self.encoder(x))[1]

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, h*w) (or (B, h, w)) -> image (B, 3, H, W) clamped to [0, 1]."""
        codes = codes.reshape(codes.shape[0], -1)
        return self.decoder(self.quantize.get_codebook_entry(codes)).clamp(0.0, 1.0)

    def decode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.decode(tokens)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        codes = self.encode(x)
        return self.decode(codes), {"min_encoding_indices": codes}


def build_maskgit_vqgan(hidden_channels: int = 128, channel_mult: Optional[Sequence[int]] = None) -> MaskGITVQGAN:
    """The MaskGIT-VQGAN of `maskgit-vqgan-imagenet-f16-256.bin` (channel_mult (1,1,2,2,4), 2 blocks, z 256,
    codebook 1024); `hidden_channels` scales every width (128 in the release), `channel_mult` (None = the release's)
    sets the levels of reduced models (downsampling 2^(levels-1))."""
    return MaskGITVQGAN(hidden_channels=hidden_channels, channel_mult=tuple(channel_mult or CHANNEL_MULT))


@torch.no_grad()
def init_codebook_from_images(vqgan: MaskGITVQGAN, images: torch.Tensor, generator: torch.Generator,
                              spread: bool = False) -> MaskGITVQGAN:
    """Set the codebook of a MaskGIT-VQGAN to the encoder features of distinct cells of `images` (B, 3, H, W) in
    [0, 1]; returns `vqgan`.

    For CPU-size TiTok runs that have no released proxy: a random network's codes are nearly constant (74 of 1024
    codes, 1.6 nats on the synthetic data at 32 px), a target that carries no image; with its codebook drawn from
    its own features every code is used and the codes follow the image (6.3 nats). `spread=False` draws random
    cells (codes crowd where cells are common: a flat colour gets many near-identical codes); `spread=True` takes
    the cells in farthest-point order from a random first one, so each code stands for a distinct feature and the
    codes of an image are easier to predict (the trained tiny proxy: held-out code cross-entropy after 200 stage-1
    steps 4.62 nats instead of 5.12; docs/quickstart_experiments.md, "Tiny TiTok").
    """
    features = vqgan.encoder(images)
    cells = features.permute(0, 2, 3, 1).reshape(-1, features.shape[1])
    size = vqgan.quantize.embedding.weight.shape[0]
    if len(cells) < size:
        raise ValueError(f"{len(images)} images give {len(cells)} cells; {size} codes need at least that many")
    if not spread:
        chosen = torch.randperm(len(cells), generator=generator)[:size]
    else:
        chosen = torch.empty(size, dtype=torch.long)
        chosen[0] = torch.randint(len(cells), (1,), generator=generator)
        nearest = (cells - cells[chosen[0]]).pow(2).sum(1)  # squared distance of each cell to its nearest chosen one
        for i in range(1, size):
            chosen[i] = nearest.argmax()
            nearest = torch.minimum(nearest, (cells - cells[chosen[i]]).pow(2).sum(1))
    vqgan.quantize.embedding.weight.copy_(cells[chosen])
    return vqgan
