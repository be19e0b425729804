"""The VQGAN+ / MaskBit Stage-I tokenizer: conv encoder, quantizer (LFQ or VQ), conv decoder.

    model = VQGANPlusTokenizer(LookupFreeQuantizer(12), token_size=12)
    x_rec, info = model(x)                      # x: (B, 3, 256, 256) in [0, 1]
    tokens = info["min_encoding_indices"]        # (B, 16, 16) int64
    x_rec = model.decode_tokens(tokens)          # same image as x_rec

There are no pre-/post-quantization 1x1 convs: the encoder's `conv_out` emits the latent the quantizer reads.
`modeling.recompute.set_gradient_checkpointing(model)` (`training.gradient_checkpointing`) recomputes each resolution stage and
the mid block in backward (`modeling.recompute`): same results, less activation memory.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from modeling.layers import Conv2dSame, DownsamplingStage, ResidualStage, UpsamplingStage, group_norm
from modeling.quantizers import LookupFreeQuantizer, VectorQuantizer
from modeling.recompute import RecomputedStages
from modeling.registry import register_builder, register_presets
from modeling.tokenizer import SpatialTokenizer


class ConvEncoder(RecomputedStages, nn.Module):
    """(B, 3, H, W) -> (B, token_size, H / 2^(L-1), W / 2^(L-1)) with L = len(channel_mult) levels."""

    def __init__(self, token_size: int, hidden_channels: int = 128, channel_mult: Sequence[int] = (1, 1, 2, 2, 4),
                 num_res_blocks: int = 2, sample_with_conv: bool = True, num_channels: int = 3):
        super().__init__()
        widths = [hidden_channels * m for m in (1, *channel_mult)]
        last = len(channel_mult) - 1
        self.conv_in = Conv2dSame(num_channels, hidden_channels, kernel_size=3, bias=False)
        self.down = nn.ModuleList(
            DownsamplingStage(widths[i], widths[i + 1], num_res_blocks, sample_with_conv) if i < last
            else ResidualStage(widths[i], widths[i + 1], num_res_blocks)
            for i in range(len(channel_mult)))
        self.mid = ResidualStage(widths[-1], widths[-1], num_res_blocks)
        self.norm_out = group_norm(widths[-1])
        self.conv_out = Conv2dSame(widths[-1], token_size, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for stage in self.down:
            h = self.run_stage(stage, h)
        h = self.run_stage(self.mid, h)
        return self.conv_out(F.silu(self.norm_out(h)))


class ConvDecoder(RecomputedStages, nn.Module):
    """(B, token_size, h, w) -> (B, 3, h * 2^(L-1), w * 2^(L-1)); no output activation.

    Stages are applied from the lowest resolution up. `up[0]` is the first-applied stage, except with
    `legacy_order=True` (MaskGIT tokenizer checkpoints), where `up[i]` is level i and runs in reverse.
    """

    def __init__(self, token_size: int, hidden_channels: int = 128, channel_mult: Sequence[int] = (1, 1, 2, 2, 4),
                 num_res_blocks: int = 2, num_channels: int = 3, legacy_order: bool = False):
        super().__init__()
        widths = [hidden_channels * m for m in (*channel_mult, channel_mult[-1])]
        self.legacy_order = legacy_order
        self.conv_in = Conv2dSame(token_size, widths[-1], kernel_size=3)
        self.mid = ResidualStage(widths[-1], widths[-1], num_res_blocks)
        stages = [UpsamplingStage(widths[i + 1], widths[i], num_res_blocks) if i > 0
                  else ResidualStage(widths[i + 1], widths[i], num_res_blocks)
                  for i in reversed(range(len(channel_mult)))]
        self.up = nn.ModuleList(stages[::-1] if legacy_order else stages)
        self.norm_out = group_norm(widths[0])
        self.conv_out = Conv2dSame(widths[0], num_channels, kernel_size=3)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.run_stage(self.mid, self.conv_in(z))
        for stage in (reversed(self.up) if self.legacy_order else self.up):
            h = self.run_stage(stage, h)
        return self.conv_out(F.silu(self.norm_out(h)))


class VQGANPlusTokenizer(SpatialTokenizer):
    """Encoder -> quantizer -> decoder on [0, 1] images (no normalisation, unbounded output).

    `quantizer` is a `LookupFreeQuantizer` or a `VectorQuantizer`; for LFQ `token_size` is the number of bits.
    `legacy_decoder=True` with `sample_with_conv=False` gives the MaskGIT tokenizer.
    """

    def __init__(self, quantizer: nn.Module, token_size: int, hidden_channels: int = 128,
                 channel_mult: Sequence[int] = (1, 1, 2, 2, 4), num_res_blocks: int = 2,
                 num_res_blocks_decoder: Optional[int] = None, sample_with_conv: bool = True,
                 legacy_decoder: bool = False, num_channels: int = 3):
        super().__init__()
        self.token_size = token_size
        self.encoder = ConvEncoder(token_size, hidden_channels, channel_mult, num_res_blocks, sample_with_conv,
                                   num_channels)
        decoder_blocks = num_res_blocks if num_res_blocks_decoder is None else num_res_blocks_decoder
        self.decoder = ConvDecoder(token_size, hidden_channels, channel_mult, decoder_blocks, num_channels,
                                   legacy_order=legacy_decoder)
        self.quantize = quantizer
        self.downsample_factor = 2 ** (len(channel_mult) - 1)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """x (B, 3, H, W) -> z_q (B, C, h, w) and the quantizer's info dict (losses, `min_encoding_indices`)."""
        return self.quantize(self.encoder(x))

    def decode(self, z_q: torch.Tensor) -> torch.Tensor:
        """z_q (B, C, h, w) -> image (B, 3, H, W)."""
        return self.decoder(z_q)


register_presets("tokenizer", main="tokenizer")
register_presets("external", main="tokenizer")


def build_quantizer(vq) -> nn.Module:
    """The quantizer of a `model.vq_model` section: lookup-free (bit tokens) or a VQ codebook."""
    if vq.quantizer_type == "lookup-free":
        return LookupFreeQuantizer(vq.token_size, vq.commitment_cost, vq.entropy_loss_weight,
                                   vq.entropy_loss_temperature, vq.entropy_gamma, vq.distributed_entropy)
    if vq.quantizer_type == "lookup":
        return VectorQuantizer(vq.codebook_size, vq.token_size, vq.commitment_cost, vq.entropy_loss_weight,
                               vq.entropy_loss_temperature, vq.entropy_gamma, vq.use_l2_normalisation,
                               vq.distributed_entropy)
    raise ValueError(f"Unknown model.vq_model.quantizer_type '{vq.quantizer_type}'; choose lookup-free or lookup.")


@register_builder("tokenizer", "vqgan+", "maskgit")
def _tokenizer_from_config(vq, image_size: int) -> VQGANPlusTokenizer:
    """`model.vq_model` -> VQGAN+ / MaskBit tokenizer, or the MaskGIT tokenizer (`model_class: maskgit`)."""
    if vq.num_resolutions != len(vq.channel_mult):
        raise ValueError(f"model.vq_model.num_resolutions={vq.num_resolutions} must equal "
                         f"len(model.vq_model.channel_mult)={len(vq.channel_mult)}.")
    return VQGANPlusTokenizer(
        build_quantizer(vq), vq.token_size, hidden_channels=vq.hidden_channels, channel_mult=list(vq.channel_mult),
        num_res_blocks=vq.num_res_blocks, num_res_blocks_decoder=vq.num_res_blocks_decoder,
        sample_with_conv=vq.sample_with_conv, legacy_decoder=vq.model_class == "maskgit",
        num_channels=vq.num_channels)
