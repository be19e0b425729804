"""Models: VQGAN+ tokenizer and quantizers, discriminators, external tokenizers, the bit-token generator, masking and sampling."""
from modeling.checkpoint import CheckpointMismatchError, load_pretrained
from modeling.discriminator import PatchGANDiscriminator, VQGANPlusDiscriminator
from modeling.factory import build_discriminator, build_quantizer, build_tokenizer
from modeling.quantizers import LookupFreeQuantizer, VectorQuantizer, bits_to_indices, indices_to_bits
from modeling.taming import TamingVQGAN
from modeling.vqgan_plus import VQGANPlusTokenizer
from modeling.generator import (BitTokenTransformer, EmbeddingTokenTransformer, MaskedTokenTransformer,
                                build_generator, load_generator_checkpoint)
from modeling.masking import label_drop_mask, mask_tokens
from modeling.mlm_loss import MLMLoss
from modeling.sampling import sample, sampling_kwargs
from modeling.token_splits import combine_tokens, split_tokens

__all__ = [
    "BitTokenTransformer", "CheckpointMismatchError", "EmbeddingTokenTransformer", "LookupFreeQuantizer", "MLMLoss",
    "MaskedTokenTransformer", "PatchGANDiscriminator", "TamingVQGAN", "VQGANPlusDiscriminator",
    "VQGANPlusTokenizer", "VectorQuantizer", "bits_to_indices", "build_discriminator", "build_generator",
    "build_quantizer", "build_tokenizer", "combine_tokens", "indices_to_bits", "label_drop_mask",
    "load_generator_checkpoint", "load_pretrained", "mask_tokens", "sample", "sampling_kwargs", "split_tokens",
]
