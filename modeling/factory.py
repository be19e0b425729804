"""Build the Stage-I models from an experiment config (`model.vq_model`, `model.discriminator`).

Both builders take the whole experiment config, as a DictConfig or a plain (possibly partial) dict; absent keys
take the defaults of `utils/schema.py`.
"""
from __future__ import annotations

from torch import nn

from modeling.discriminator import PatchGANDiscriminator, VQGANPlusDiscriminator
from modeling.quantizers import LookupFreeQuantizer, VectorQuantizer
from modeling.taming import TamingVQGAN
from modeling.vqgan_plus import VQGANPlusTokenizer
from utils.config import ConfigLike, with_defaults

TOKENIZER_CLASSES = ("vqgan+", "maskgit", "taming")
QUANTIZER_TYPES = ("lookup-free", "lookup")
DISCRIMINATORS = ("VQGAN+Discriminator", "Original")


def build_quantizer(vq) -> nn.Module:
    """The quantizer described by a `model.vq_model` config section."""
    if vq.quantizer_type == "lookup-free":
        return LookupFreeQuantizer(vq.token_size, vq.commitment_cost, vq.entropy_loss_weight,
                                   vq.entropy_loss_temperature, vq.entropy_gamma, vq.distributed_entropy)
    if vq.quantizer_type == "lookup":
        return VectorQuantizer(vq.codebook_size, vq.token_size, vq.commitment_cost, vq.entropy_loss_weight,
                               vq.entropy_loss_temperature, vq.entropy_gamma, vq.use_l2_normalisation,
                               vq.distributed_entropy)
    if vq.quantizer_type == "vae":
        raise NotImplementedError("model.vq_model.quantizer_type='vae' is not implemented (nor in the official "
                                  "code). Use 'lookup-free' or 'lookup'.")
    raise ValueError(f"Unknown model.vq_model.quantizer_type '{vq.quantizer_type}'; choose one of {QUANTIZER_TYPES}.")


def build_tokenizer(config: ConfigLike) -> nn.Module:
    """The tokenizer of `config.model.vq_model`: VQGAN+ / MaskBit, the MaskGIT tokenizer, or the Taming VQGAN."""
    vq = with_defaults(config).model.vq_model
    if vq.model_class == "taming":  # fixed architecture, as in the official code
        return TamingVQGAN(vq.codebook_size, vq.token_size)
    if vq.model_class not in ("vqgan+", "maskgit"):
        raise ValueError(f"Unknown model.vq_model.model_class '{vq.model_class}'; choose one of {TOKENIZER_CLASSES}.")
    if vq.num_resolutions != len(vq.channel_mult):
        raise ValueError(f"model.vq_model.num_resolutions={vq.num_resolutions} must equal "
                         f"len(model.vq_model.channel_mult)={len(vq.channel_mult)}.")
    return VQGANPlusTokenizer(
        build_quantizer(vq), vq.token_size, hidden_channels=vq.hidden_channels, channel_mult=list(vq.channel_mult),
        num_res_blocks=vq.num_res_blocks, num_res_blocks_decoder=vq.num_res_blocks_decoder,
        sample_with_conv=vq.sample_with_conv, legacy_decoder=vq.model_class == "maskgit",
        num_channels=vq.num_channels)


def build_discriminator(config: ConfigLike) -> nn.Module:
    """The discriminator of `config.model.discriminator`."""
    d = with_defaults(config).model.discriminator
    if d.name == "VQGAN+Discriminator":
        return VQGANPlusDiscriminator(d.num_channels, d.hidden_channels, d.num_stages, d.blur_resample,
                                      d.blur_kernel_size)
    if d.name == "Original":
        return PatchGANDiscriminator(d.num_channels, d.hidden_channels, d.num_stages)
    raise ValueError(f"Unknown model.discriminator.name '{d.name}'; choose one of {DISCRIMINATORS}.")
