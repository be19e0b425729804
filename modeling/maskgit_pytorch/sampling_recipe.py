"""Config -> sampler: `model.maskgit_sampler` settings for this family's generators and for MaskBit's switch.

    settings = maskgit_sampler_settings(config, version=2)      # {"scheduler": "halton", "step": 32, ...}
    fn = build(config, generator, tokenizer)                     # (labels, seeds) -> images in [0, 1]

The family's transformers (`model.maskgit.version` v1 / v2, the names their builders registered) sample with
their own samplers; MaskBit's generator does too when `model.mlm_model.sampler` is `confidence_v1`,
`confidence_v2` or `halton` (through `BitTokenGrid`), so one model can be compared across samplers.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from modeling.maskgit_pytorch.bit_token_grid import BitTokenGrid
from modeling.maskgit_pytorch.sampler import (DEFAULT_SCHEDULER, SamplerSettingError, infill, resolve_settings,
                                              sample)
from modeling.maskgit_pytorch.transformer_v1 import MaskTransformer
from modeling.maskgit_pytorch.transformer_v2 import HaltonTransformer
from modeling.registry import register_infill, register_sampler
from utils.config import as_config

FIELDS = ("step", "w", "sm_temp", "r_temp", "randomize", "sched_mode", "sm_temp_min", "sm_temp_max", "temp_pow",
          "temp_warmup", "top_k", "sched_pow", "cumulative")
MASKBIT_SWITCH = {"confidence_v1": (1, "confidence"), "confidence_v2": (2, "confidence"), "halton": (2, "halton")}


def maskgit_sampler_settings(config, version: int, scheduler: Optional[str] = None) -> dict:
    """{"version", "scheduler", every setting of that sampler}: `model.maskgit_sampler` over the official defaults.
    `scheduler` None = `model.maskgit_sampler.scheduler`, '' there = the version's default (v1 confidence, v2 halton).
    """
    section = as_config(config).model.maskgit_sampler
    scheduler = scheduler or section.scheduler or DEFAULT_SCHEDULER.get(version, "")
    settings = resolve_settings(version, scheduler, **{k: section[k] for k in FIELDS})
    return {"version": version, "scheduler": scheduler, **settings}


def images_fn(model, tokenizer, settings: dict, codebook_size: int, mask_value: Optional[int] = None) -> Callable:
    """(labels (B,), seeds (B,)) -> images (B, 3, H, W) in the tokenizer's [0, 1] convention: clamp the tokens to
    [0, K-1] and decode; v2 also clamps the images (its official [-1, 1] clamp), v1 does not. `mask_value` < 0: the
    v1 "noise" models, which start from random codes (`model.maskgit.mask_value`)."""
    def run(labels: torch.Tensor, seeds) -> torch.Tensor:
        code = sample(model, labels, seeds=seeds, codebook_size=codebook_size, mask_value=mask_value,
                      **settings)["code"]
        images = tokenizer.eval().decode_tokens(code.clamp(0, codebook_size - 1))
        return images.clamp(0, 1) if settings["version"] == 2 else images
    return run


def maskbit_switch_settings(config) -> dict:
    """The settings of the sampler that `model.mlm_model.sampler` names, with `"sampler"` recorded."""
    choice = as_config(config).model.mlm_model.sampler
    if choice not in MASKBIT_SWITCH:
        raise SamplerSettingError(f"model.mlm_model.sampler must be maskbit or one of {sorted(MASKBIT_SWITCH)}, "
                                  f"got {choice!r}")
    return {"sampler": choice, **maskgit_sampler_settings(config, *MASKBIT_SWITCH[choice])}


def maskbit_with_maskgit_sampler(config, generator, tokenizer) -> Callable:
    """MaskBit's generator sampled by the sampler named in `model.mlm_model.sampler` (through `BitTokenGrid`)."""
    settings = maskbit_switch_settings(config)
    settings.pop("sampler")
    grid_model = BitTokenGrid(generator).train(generator.training)  # sampling leaves the generator as it was
    return images_fn(grid_model, tokenizer, settings, grid_model.codebook_size)


class _FamilySampling:
    """This family's sampling recipe (`modeling.registry.register_sampler`); `evaluation` changes nothing: the
    official evaluations sample with the configured settings."""
    version = 0

    @classmethod
    def settings(cls, config, evaluation: bool) -> dict:
        return maskgit_sampler_settings(config, cls.version)

    @classmethod
    def build(cls, config, generator, tokenizer, evaluation: bool):
        return images_fn(generator, tokenizer, cls.settings(config, evaluation), generator.codebook_size,
                         as_config(config).model.maskgit.mask_value)


@register_sampler("v1")
class MaskGITv1Sampling(_FamilySampling):
    version = 1


@register_sampler("v2")
class MaskGITv2Sampling(_FamilySampling):
    version = 2


register_infill(MaskTransformer, HaltonTransformer)(infill)  # image editing (modeling.edit) with these samplers
