"""The Stage-II MaskBit generator: a bidirectional transformer that predicts masked token groups.

`BitTokenTransformer` (official `LFQBert`, `model_cls: lfq_bert`) is embedding-free: it reads the bits of the
LFQ tokens directly through one linear projection. `EmbeddingTokenTransformer` (official `Bert`,
`model_cls: bert`) is the MaskGIT-style baseline with one embedding table per split and tied output weights.
Both share the trunk: class token appended at the end, learned positions, post-norm BERT blocks, GELU+LN head.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import torch
from torch import nn

from modeling.registry import register_builder, register_infill, register_presets, register_sampler
from modeling.sampling import SamplingConfig, infill, sample
from modeling.token_splits import combine_tokens, split_tokens, split_tokens_to_bits
from modeling.transformer import LAYER_NORM_EPS, TransformerEncoder
from utils.config import ConfigLike, as_config


def _init_weights(module: nn.Module) -> None:
    """Official init: trunc-normal(0.02) with absolute bounds +-2 (so effectively untruncated), LN 1/0."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.trunc_normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class MaskedTokenTransformer(nn.Module):
    """Shared trunk. Subclasses define how split tokens enter (`embed_tokens`) and leave (`predict_logits`).

    Tokens are (B, N, S) split indices in [0, V], V = 2^(bits/S) being the mask id; class ids are in
    [0, num_classes], num_classes being the null (unconditional) class.
    """

    checkpoint_key_renames = {"token_emb": "input_proj"}  # the released checkpoints use the older name

    def __init__(self, bits: int, codebook_splits: int = 2, seq_len: int = 256, hidden_dim: int = 1024,
                 depth: int = 24, heads: int = 16, mlp_dim: int = 4096, dropout: float = 0.1,
                 num_classes: int = 1000, use_prenorm: bool = False):
        super().__init__()
        if bits % codebook_splits:
            raise ValueError(f"token bits ({bits}) must be divisible by codebook_splits ({codebook_splits})")
        self.bits, self.splits, self.seq_len = bits, codebook_splits, seq_len
        self.bits_per_split = bits // codebook_splits
        self.effective_codebook_size = 2 ** self.bits_per_split  # V: values per split
        self.mask_token = self.effective_codebook_size
        self.num_classes = num_classes
        self.null_class = num_classes
        self.use_prenorm = use_prenorm

        # Construction order matches the official modules, so a seeded model gets the same initial weights.
        self.class_emb = nn.Embedding(num_classes + 1, hidden_dim)
        self._build_token_input(hidden_dim)
        self.pos_emb = nn.Parameter(nn.init.trunc_normal_(torch.zeros(1, seq_len + 1, hidden_dim), 0.0, 0.02))
        self.first_layer = nn.Sequential(nn.LayerNorm(hidden_dim, eps=LAYER_NORM_EPS), nn.Dropout(dropout))
        self.transformer = TransformerEncoder(hidden_dim, depth, heads, mlp_dim, dropout, use_prenorm)
        if use_prenorm:
            self.norm_after_transformer = nn.LayerNorm(hidden_dim, eps=LAYER_NORM_EPS)
        self.last_layer = nn.Sequential(nn.Linear(hidden_dim, hidden_dim), nn.GELU(),
                                        nn.LayerNorm(hidden_dim, eps=LAYER_NORM_EPS))
        self._build_token_output(hidden_dim)
        self.apply(_init_weights)

    # -- subclass interface
    def _build_token_input(self, hidden_dim: int) -> None:
        raise NotImplementedError

    def _build_token_output(self, hidden_dim: int) -> None:
        raise NotImplementedError

    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, N, S) split indices -> (B, N, D)."""
        raise NotImplementedError

    def predict_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, N, S, V)."""
        raise NotImplementedError

    # -- shared
    def forward(self, tokens: torch.Tensor, class_ids: torch.Tensor,
                drop_label_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """tokens (B, N, S) int, class_ids (B,), drop_label_mask (B,) bool -> logits (B, N, S, V).

        Samples where `drop_label_mask` is True use the null class. `None` keeps every label (the official
        code drops all labels for None, and writes the null class into the caller's tensor; we never modify
        inputs).
        """
        self._check_inputs(tokens, class_ids, drop_label_mask)
        labels = class_ids.reshape(-1)
        if drop_label_mask is not None:
            labels = labels.masked_fill(drop_label_mask.reshape(-1), self.null_class)
        x = torch.cat([self.embed_tokens(tokens), self.class_emb(labels).unsqueeze(1)], dim=1)  # class token last
        x = self.first_layer(x + self.pos_emb)
        x = self.transformer(x)
        if self.use_prenorm:
            x = self.norm_after_transformer(x)
        return self.predict_logits(self.last_layer(x[:, :self.seq_len]))

    def split_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Full tokenizer indices (B, N) -> split indices (B, N, S), int64."""
        return split_tokens(tokens, self.bits, self.splits)

    def combine_tokens(self, split: torch.Tensor) -> torch.Tensor:
        """Split indices (B, N, S) -> full tokenizer indices (B, N), int64."""
        return combine_tokens(split, self.bits, self.splits)

    def _check_inputs(self, tokens, class_ids, drop_label_mask) -> None:
        if tokens.dim() != 3 or tuple(tokens.shape[1:]) != (self.seq_len, self.splits):
            raise ValueError(f"tokens must have shape (B, {self.seq_len}, {self.splits}) (split indices; use "
                             f"model.split_tokens on (B, N) tokenizer indices), got {tuple(tokens.shape)}")
        if tokens.is_floating_point() or class_ids.is_floating_point():
            raise TypeError(f"tokens and class_ids must be integer tensors, got {tokens.dtype} / {class_ids.dtype}")
        if class_ids.numel() != tokens.shape[0]:
            raise ValueError(f"expected one class id per sample ({tokens.shape[0]}), got shape "
                             f"{tuple(class_ids.shape)}")
        if drop_label_mask is not None and (drop_label_mask.dtype != torch.bool
                                            or drop_label_mask.numel() != tokens.shape[0]):
            raise ValueError(f"drop_label_mask must be a bool tensor with one entry per sample, got "
                             f"{drop_label_mask.dtype} of shape {tuple(drop_label_mask.shape)}")


class BitTokenTransformer(MaskedTokenTransformer):
    """Embedding-free generator (official `LFQBert`): a masked token group enters as zero bits.

    The input is the tokenizer's LFQ latent (B, N, K) in {-1, +1} with masked groups zeroed, projected by
    `input_proj` (K -> D; called `token_emb` in the released checkpoints). Output: Linear(D, S*V).
    """

    def _build_token_input(self, hidden_dim: int) -> None:
        self.register_buffer("bits_to_indices", 2 ** torch.arange(self.bits_per_split, dtype=torch.int32))
        self.input_proj = nn.Linear(self.bits, hidden_dim)

    def _build_token_output(self, hidden_dim: int) -> None:
        self.prediction_layer = nn.Linear(hidden_dim, self.splits * self.effective_codebook_size)

    def tokens_to_bits(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, N, S) split indices -> (B, N, K) bits in {-1, +1}, masked groups 0."""
        return split_tokens_to_bits(tokens, self.bits_to_indices, self.mask_token)

    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.input_proj(self.tokens_to_bits(tokens))

    def predict_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.prediction_layer(x).unflatten(-1, (self.splits, self.effective_codebook_size))


class EmbeddingTokenTransformer(MaskedTokenTransformer):
    """MaskGIT-style generator (official `Bert`) for VQ tokens: per-split tables Embedding(V+1, D), summed.

    Logits of split i are `h @ E_i[:V]^T + b_i` (weights tied to the input table, bias per position (N, V)).
    """

    def _build_token_input(self, hidden_dim: int) -> None:
        self.tok_emb_list = nn.ModuleList(
            [nn.Embedding(self.effective_codebook_size + 1, hidden_dim) for _ in range(self.splits)])

    def _build_token_output(self, hidden_dim: int) -> None:
        self.bias = nn.ParameterList(
            [nn.Parameter(torch.zeros(self.seq_len, self.effective_codebook_size)) for _ in range(self.splits)])

    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        return sum(table(tokens[..., i]) for i, table in enumerate(self.tok_emb_list))

    def predict_logits(self, x: torch.Tensor) -> torch.Tensor:
        vocab = self.effective_codebook_size
        return torch.stack([x @ table.weight[:vocab].T + bias
                            for table, bias in zip(self.tok_emb_list, self.bias)], dim=2)


register_presets("generator", main="generator")
register_infill(MaskedTokenTransformer)(infill)  # image editing (modeling.edit) with MaskBit's sampler


@register_builder("generator", "lfq_bert", "bert")
def _generator_from_config(mlm, tokens) -> MaskedTokenTransformer:
    """`model.mlm_model` -> `BitTokenTransformer` (lfq_bert) or `EmbeddingTokenTransformer` (bert), for the
    tokenizer's `TokenSpace` `tokens` (bits per token, sequence length)."""
    if tokens.token_bits is None:
        raise ValueError(f"the tokenizer's codebook size ({tokens.codebook_size}) must be a power of two: MaskBit "
                         f"generators split each token into groups of bits (model.vq_model.codebook_size)")
    cls = BitTokenTransformer if mlm.model_cls == "lfq_bert" else EmbeddingTokenTransformer
    return cls(bits=tokens.token_bits, codebook_splits=mlm.codebook_splits, seq_len=tokens.seq_len,
               hidden_dim=mlm.hidden_dim, depth=mlm.depth, heads=mlm.heads, mlp_dim=mlm.mlp_dim,
               dropout=mlm.dropout, num_classes=mlm.num_classes, use_prenorm=mlm.use_prenorm)


def sampling_config(config: ConfigLike) -> SamplingConfig:
    """The sampler settings of `model.mlm_model` (MaskBit's sampler)."""
    mlm = as_config(config).model.mlm_model
    return SamplingConfig(
        num_steps=mlm.num_steps, guidance_scale=mlm.guidance_scale, guidance_annealing=mlm.guidance_annealing,
        scale_pow=mlm.scale_pow, randomize_temperature=mlm.randomize_temperature,
        softmax_temperature=mlm.softmax_temperature, use_sampling_annealing=mlm.use_sampling_annealing,
        mask_schedule=mlm.gen_mask_schedule_strategy)


@register_sampler("lfq_bert", "bert")
class MaskBitSampling:
    """MaskBit's sampler (`modeling.sampling.sample`) with `model.mlm_model`'s settings."""

    @staticmethod
    def _settings(config, evaluation: bool) -> SamplingConfig:
        settings = sampling_config(config)
        return settings.replace(softmax_temperature=1.0) if evaluation else settings  # as the official eval script

    @staticmethod
    def settings(config, evaluation: bool) -> dict:
        if as_config(config).model.mlm_model.sampler != "maskbit":
            from modeling.maskgit_pytorch.sampling_recipe import maskbit_switch_settings
            return maskbit_switch_settings(config)
        runtime_only = ("autocast_dtype", "skip_unguided_pass", "compile")
        return {k: v for k, v in dataclasses.asdict(MaskBitSampling._settings(config, evaluation)).items()
                if k not in runtime_only}

    @staticmethod
    def build(config, generator, tokenizer, evaluation: bool):
        if as_config(config).model.mlm_model.sampler != "maskbit":  # a MaskGIT-pytorch sampler on this generator
            from modeling.maskgit_pytorch.sampling_recipe import maskbit_with_maskgit_sampler
            return maskbit_with_maskgit_sampler(config, generator, tokenizer)
        settings = MaskBitSampling._settings(config, evaluation)
        return lambda labels, seeds: sample(generator, tokenizer, labels, seeds=seeds, settings=settings)
