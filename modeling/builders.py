"""The one bridge from an experiment config to models: dispatch through the registry, whatever the family.

    tokenizer = build_tokenizer(config)          # model.vq_model      -> by model.vq_model.model_class
    generator = build_generator(config)          # model.generator     -> by model.generator.model_type (TiTok), else
                                                 # model.mlm_model     -> by model.mlm_model.model_cls
    discriminator = build_discriminator(config)  # model.discriminator -> by model.discriminator.name
    sample_fn = build_sampler(config, generator, tokenizer)   # the generator family's sampler, config settings
    images = class_grid(sample_fn, classes=[1, 7], per_class=4)  # row-major by class, image k seeded seed + k

`config` is the merged experiment config of `utils.config.load_config`; a plain (possibly partial) dict is merged
onto the schema defaults first. Each family's builder sees only its own section, turned into explicit constructor
arguments. The generator also needs the token space of the config's tokenizer: `token_space(config)` reads it
from the tokenizer module itself (built on the meta device: no memory, no compute, no random draws), so token bits,
codebook size and grid come from one place.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence, Tuple

import torch
from torch import nn

from modeling.registry import builder, sampler_recipe
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


def generation_settings(config: ConfigLike, evaluation: bool = False) -> dict:
    """What the config's generator family samples with (recorded by evaluation runs)."""
    config = as_config(config)
    return sampler_recipe(config).settings(config, evaluation)


def build_sampler(config: ConfigLike, generator: nn.Module, tokenizer: nn.Module,
                  evaluation: bool = False) -> Callable[[torch.Tensor, Sequence[int]], torch.Tensor]:
    """fn(labels (B,), seeds (B,)) -> images (B, 3, H, W), unclamped: the config's generator family's sampler with
    the config's settings; sample i depends only on (labels[i], seeds[i])."""
    config = as_config(config)
    return sampler_recipe(config).build(config, generator, tokenizer, evaluation)


def class_grid(sample_fn: Callable[[torch.Tensor, Sequence[int]], torch.Tensor], classes: Sequence[int],
               per_class: int, seed: int = 0, batch_size: int = 32) -> torch.Tensor:
    """`per_class` images of every class in `classes` from a `build_sampler` function, row-major by class, clamped
    to [0, 1], float32 on the CPU: (len(classes) * per_class, 3, H, W). Image k uses seed `seed + k`, so the grid
    does not depend on `batch_size`."""
    labels = torch.as_tensor(list(classes)).repeat_interleave(per_class)
    seeds = [seed + k for k in range(len(labels))]
    return torch.cat([sample_fn(labels[i:i + batch_size], seeds[i:i + batch_size]).float().clamp(0, 1).cpu()
                      for i in range(0, len(labels), batch_size)])


BUILD = {"tokenizer": build_tokenizer, "generator": build_generator, "discriminator": build_discriminator}
