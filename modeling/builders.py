"""The one bridge from an experiment config to models: dispatch through the registry, whatever the family.

    tokenizer = build_tokenizer(config)          # model.vq_model      -> by model.vq_model.model_class
    generator = build_generator(config)          # model.generator     -> by model.generator.model_type (TiTok), else
                                                 # model.mlm_model     -> by model.mlm_model.model_cls
    discriminator = build_discriminator(config)  # model.discriminator -> by model.discriminator.name
    settings = sampling_config(config)           # model.mlm_model     -> SamplingConfig

`config` is the merged experiment config of `utils.config.load_config`; a plain (possibly partial) dict is merged
onto the schema defaults first. Each family's builder sees only its own section, turned into explicit constructor
arguments. The generator also needs the token space of the config's tokenizer: `token_space(config)` reads it
from the tokenizer module itself (built on the meta device: no memory, no compute, no random draws), so token bits,
codebook size and grid come from one place.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import torch
from torch import nn

from modeling.registry import builder
from modeling.sampling import SamplingConfig
from utils.config import ConfigLike, as_config


@dataclass(frozen=True)
class TokenSpace:
    """The tokens a generator models: `codebook_size` values (`token_bits` bits when a power of two) on `grid`."""
    codebook_size: int
    token_bits: int | None
    grid: Tuple[int, ...]

    @property
    def seq_len(self) -> int:
        n = 1
        for side in self.grid:
            n *= side
        return n


def build_tokenizer(config: ConfigLike) -> nn.Module:
    """The tokenizer of `model.vq_model`, for `dataset.preprocessing.resolution` images (ViT tokenizers size their
    position tables by it; convolutional ones ignore it)."""
    config = as_config(config)
    build, vq = builder("tokenizer", config)
    return build(vq, config.dataset.preprocessing.resolution)


def build_discriminator(config: ConfigLike) -> nn.Module:
    """The discriminator of `model.discriminator`."""
    build, section = builder("discriminator", as_config(config))
    return build(section)


def token_space(config: ConfigLike) -> TokenSpace:
    """The token space of the config's tokenizer on `dataset.preprocessing.resolution` images."""
    config = as_config(config)
    with torch.device("meta"):
        tokenizer = build_tokenizer(config)
    return TokenSpace(tokenizer.codebook_size, tokenizer.token_bits,
                      tuple(tokenizer.token_grid(config.dataset.preprocessing.resolution)))


def build_generator(config: ConfigLike) -> nn.Module:
    """The generator of `model.mlm_model`, sized for the token space of `model.vq_model`."""
    config = as_config(config)
    build, section = builder("generator", config)
    return build(section, token_space(config))


def sampling_config(config: ConfigLike) -> SamplingConfig:
    """The sampler settings of `model.mlm_model` (MaskBit's sampler)."""
    mlm = as_config(config).model.mlm_model
    return SamplingConfig(
        num_steps=mlm.num_steps, guidance_scale=mlm.guidance_scale, guidance_annealing=mlm.guidance_annealing,
        scale_pow=mlm.scale_pow, randomize_temperature=mlm.randomize_temperature,
        softmax_temperature=mlm.softmax_temperature, use_sampling_annealing=mlm.use_sampling_annealing,
        mask_schedule=mlm.gen_mask_schedule_strategy)


BUILD = {"tokenizer": build_tokenizer, "generator": build_generator, "discriminator": build_discriminator}
