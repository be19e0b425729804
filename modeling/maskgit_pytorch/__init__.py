"""MaskGIT-pytorch (v1) and Halton-MaskGIT (v2): the valeoai transformers, their VQGANs and samplers.

Facts: `docs/design/maskgit-pytorch-facts.md`. Released layouts: `tests/fixtures/checkpoint_layout_maskgit_pytorch/`.
`modeling.maskgit_pytorch.build` registers the builders and the presets of `configs/maskgit_pytorch/`.
"""
from modeling.maskgit_pytorch.masking import mask_code, masking_probability
from modeling.maskgit_pytorch.transformer_v1 import MaskTransformer
from modeling.maskgit_pytorch.transformer_v2 import HaltonTransformer
from modeling.maskgit_pytorch.vqgan import LlamaGenVQGAN, TamingF16VQGAN
from modeling.maskgit_pytorch.build import build_transformer, build_vqgan  # registers the family

__all__ = [
    "HaltonTransformer", "LlamaGenVQGAN", "MaskTransformer", "TamingF16VQGAN", "build_transformer", "build_vqgan",
    "mask_code", "masking_probability",
]
