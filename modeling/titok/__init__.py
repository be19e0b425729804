"""The TiTok family (1D tokenizers, Yu et al. 2024): the TiTok tokenizer (VQ and VAE variants), its ViT blocks, the
MaskGIT-VQGAN it builds on (stage-1 targets, stage-2 pixel decoder) and the MaskGIT generators on 1D tokens
(`ImageBert`, `UViTBert`). `modeling.titok.build` registers them and the presets of `configs/titok/`."""
from modeling.titok.blocks import ResidualAttentionBlock, TiTokDecoder, TiTokEncoder, VIT_SIZES, vit_dims
from modeling.titok.maskgit_vqgan import (MaskGITDecoder, MaskGITEncoder, MaskGITQuantizer, MaskGITVQGAN,
                                          build_maskgit_vqgan, init_codebook_from_images)
from modeling.titok.tokenizer import DiagonalGaussianDistribution, TiTok, build_titok
from modeling.titok.generator import ImageBert, UViTBert, build_titok_generator
from modeling.titok import build  # noqa: F401  (registers the family)

__all__ = [
    "DiagonalGaussianDistribution", "ImageBert", "MaskGITDecoder", "MaskGITEncoder", "MaskGITQuantizer", "MaskGITVQGAN",
    "ResidualAttentionBlock", "TiTok", "TiTokDecoder", "TiTokEncoder", "VIT_SIZES", "build_maskgit_vqgan",
    "UViTBert", "init_codebook_from_images", "build_titok", "build_titok_generator", "vit_dims",
]
