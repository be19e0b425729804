"""Models of every family, their registry, and the config bridge.

    from modeling import create_model, list_models, build_tokenizer, build_generator, sample

Importing the package imports each family's modules, which register their builders and presets
(`modeling.registry`). Nothing here depends on `training`, `data` or `evaluation`.
"""
from modeling.builders import (TokenSpace, build_discriminator, build_generator, build_sampler, build_tokenizer,
                               class_grid, generation_settings, token_space)
from modeling.checkpoint import CheckpointMismatchError, CheckpointNotFoundError, load_pretrained
from modeling.editing import EditError, edit
from modeling.masking import label_drop_mask, mask_tokens
from modeling.quantizers import LookupFreeQuantizer, VectorQuantizer, bits_to_indices, indices_to_bits
from modeling.registry import create_model, list_models, register_builder, register_presets
from modeling.sampling import SamplingConfig, sample, sample_grid
from modeling.token_splits import combine_tokens, split_tokens
from modeling.tokenizer import SpatialTokenizer
# the family modules: importing them registers their builders and presets
from modeling.discriminator import PatchGANDiscriminator, VQGANPlusDiscriminator
from modeling.generator import (BitTokenTransformer, EmbeddingTokenTransformer, MaskedTokenTransformer,
                                sampling_config)
from modeling.taming import TamingVQGAN
from modeling.vqgan_plus import VQGANPlusTokenizer, build_quantizer
from modeling import titok  # noqa: E402,F401  (the TiTok family)
from modeling import maskgit_pytorch  # noqa: E402,F401  (the MaskGIT-pytorch / Halton-MaskGIT family)

__all__ = [
    "BitTokenTransformer", "CheckpointMismatchError", "CheckpointNotFoundError", "EmbeddingTokenTransformer",
    "LookupFreeQuantizer", "MaskedTokenTransformer", "PatchGANDiscriminator", "SamplingConfig", "SpatialTokenizer",
    "TamingVQGAN", "TokenSpace", "VQGANPlusDiscriminator", "VQGANPlusTokenizer", "VectorQuantizer",
    "bits_to_indices", "build_discriminator", "build_generator", "build_sampler", "build_quantizer", "build_tokenizer",
    "class_grid", "combine_tokens", "create_model", "generation_settings", "indices_to_bits", "label_drop_mask",
    "list_models", "load_pretrained",
    "mask_tokens", "register_builder", "register_presets", "sample", "sample_grid", "sampling_config",
    "split_tokens", "token_space",
]
__all__ += ["EditError", "edit"]  # image editing (modeling.editing)
