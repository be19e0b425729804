"""Quantizers of the Stage-I tokenizer: lookup-free (bit tokens) and vector quantization (codebook)."""
from modeling.quantizers.entropy import lfq_entropy, softmax_entropy
from modeling.quantizers.lookup_free import LookupFreeQuantizer, bits_to_indices, indices_to_bits
from modeling.quantizers.vector import VectorQuantizer

__all__ = ["LookupFreeQuantizer", "VectorQuantizer", "bits_to_indices", "indices_to_bits", "lfq_entropy",
           "softmax_entropy"]
