"""MaskGIT-pytorch (v1) and Halton-MaskGIT (v2): the valeoai transformers, their VQGANs and samplers.

Facts: `docs/design/maskgit-pytorch-facts.md`. Released layouts: `tests/fixtures/checkpoint_layout_maskgit_pytorch/`.
`modeling.maskgit_pytorch.build` registers the builders and the presets of `configs/maskgit_pytorch/`,
`modeling.maskgit_pytorch.sampling_recipe` the samplers of the transformers (`model.maskgit.version` v1 / v2).
"""
from modeling.maskgit_pytorch.masking import mask_code, masking_probability
from modeling.maskgit_pytorch.transformer_v1 import MaskTransformer
from modeling.maskgit_pytorch.transformer_v2 import HaltonTransformer
from modeling.maskgit_pytorch.vqgan import LlamaGenVQGAN, TamingF16VQGAN
from modeling.maskgit_pytorch.build import build_transformer, build_vqgan  # registers the family
from modeling.maskgit_pytorch.bit_token_grid import BitTokenGrid
from modeling.maskgit_pytorch.halton import halton_order
from modeling.maskgit_pytorch.sampler import official_defaults, sample
from modeling.maskgit_pytorch.sampling_recipe import maskgit_sampler_settings  # registers the samplers
from modeling.maskgit_pytorch.schedules import confidence_schedule, halton_schedule

__all__ = [
    "BitTokenGrid", "HaltonTransformer", "LlamaGenVQGAN", "MaskTransformer", "TamingF16VQGAN", "build_transformer",
    "build_vqgan", "confidence_schedule", "halton_order", "halton_schedule", "mask_code", "masking_probability",
    "maskgit_sampler_settings", "official_defaults", "sample",
]
