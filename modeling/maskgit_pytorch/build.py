"""The MaskGIT-pytorch family in the registry: builders from plain dicts and config sections, and the presets of
`configs/maskgit_pytorch/` (transformer configs, and the two VQGAN configs `*_vqgan_*`).

    transformer = build_transformer({"version": "v2", "input_size": 16, "hidden_dim": 64, "codebook_size": 32,
                                     "depth": 2, "heads": 2, "mlp_dim": 128, "dropout": 0.0, "nclass": 10})
    vqgan = build_vqgan({"kind": "llamagen", "codebook_size": 32, "ch": 32, "ch_mult": (1, 2)})

`model.maskgit.version` v1 / v2 selects the transformer of a config (official argument names; K and the grid come
from the config's tokenizer), `model.vq_model.model_class` maskgit_pytorch_taming / llamagen_vq the VQGAN.
"""
from __future__ import annotations

import inspect
from typing import Mapping

from torch import nn

from modeling.maskgit_pytorch.transformer_v1 import MaskTransformer
from modeling.maskgit_pytorch.transformer_v2 import HaltonTransformer
from modeling.maskgit_pytorch.vqgan import LlamaGenVQGAN, TamingF16VQGAN
from modeling.registry import register_builder, register_presets

TRANSFORMERS = {"v1": MaskTransformer, "v2": HaltonTransformer}
VQGANS = {"taming": TamingF16VQGAN, "llamagen": LlamaGenVQGAN}
VQGAN_MODEL_CLASSES = {"maskgit_pytorch_taming": "taming", "llamagen_vq": "llamagen"}  # model.vq_model.model_class

register_presets("maskgit_pytorch", main="tokenizer", pattern="*_vqgan_*.yaml")
register_presets("maskgit_pytorch", main="generator")

# the released files (facts §10): transformers {"iter", "global_epoch", "model_state_dict", "optimizer_state_dict"}
# (v1: `current.pth` in a run folder); LlamaGen {"model", ...}; the v1 VQGAN a Lightning `last.ckpt` (its
# `state_dict` without `loss.*`, read by modeling.checkpoint), flat or under ckpts/ as the v1 trainer expects
MaskTransformer.checkpoint_weights_keys = ("model_state_dict",)
MaskTransformer.checkpoint_files = ("current.pth",)
HaltonTransformer.checkpoint_weights_keys = ("model_state_dict",)
LlamaGenVQGAN.checkpoint_weights_keys = ("model",)
LlamaGenVQGAN.checkpoint_files = ("vq_ds16_c2i.pt",)
TamingF16VQGAN.checkpoint_files = ("last.ckpt", "ckpts/last.ckpt")


def _construct(table: Mapping[str, type], choice_key: str, cfg: Mapping) -> nn.Module:
    cfg = dict(cfg)
    choice = cfg.pop(choice_key, None)
    if choice not in table:
        raise ValueError(f"'{choice_key}' must be one of {sorted(table)}, got {choice!r}")
    cls = table[choice]
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(set(cfg) - accepted)
    if unknown:
        raise ValueError(f"{cls.__name__} ({choice_key} {choice!r}) takes {sorted(accepted)}; unknown: {unknown}")
    return cls(**cfg)


def build_transformer(cfg: Mapping) -> nn.Module:
    """cfg = {"version": "v1" | "v2", **official constructor arguments} -> `MaskTransformer` / `HaltonTransformer`.

    v1: img_size, hidden_dim, codebook_size, f_factor (token-grid side), depth, heads, mlp_dim, dropout, nclass.
    v2: input_size, hidden_dim, codebook_size, depth, heads, mlp_dim, dropout, nclass, register, proj.
    """
    return _construct(TRANSFORMERS, "version", cfg)


def build_vqgan(cfg: Mapping) -> nn.Module:
    """cfg = {"kind": "taming" | "llamagen", **constructor arguments} -> the frozen VQGAN (defaults: the release).

    taming: codebook_size, token_size, ch, ch_mult, num_res_blocks, attn_resolutions, resolution, z_channels.
    llamagen: codebook_size, codebook_embed_dim, ch, ch_mult, num_res_blocks, z_channels.
    """
    return _construct(VQGANS, "kind", cfg)


@register_builder("tokenizer", *VQGAN_MODEL_CLASSES)
def _vqgan_from_config(vq, image_size: int) -> nn.Module:
    """`model.vq_model`: the released architectures; codebook, code dimension, widths and depth are read so that
    tests build reduced ones. The Taming attention sits at 16x16 of a 256 px input, as in its released config."""
    widths = dict(codebook_size=vq.codebook_size, ch=vq.hidden_channels, ch_mult=tuple(vq.channel_mult),
                  num_res_blocks=vq.num_res_blocks)
    if VQGAN_MODEL_CLASSES[vq.model_class] == "taming":
        return build_vqgan(dict(kind="taming", token_size=vq.token_size, **widths))
    return build_vqgan(dict(kind="llamagen", codebook_embed_dim=vq.token_size, **widths))


@register_builder("generator", *TRANSFORMERS)
def _transformer_from_config(section, tokens) -> nn.Module:
    """`model.maskgit` on the token space of the config's VQGAN (a square grid of K codes; mask id K)."""
    if tokens.codebook_size is None or len(tokens.grid) != 2 or tokens.grid[0] != tokens.grid[1]:
        raise ValueError(f"MaskGIT-pytorch transformers model a square grid of VQ codes; this config's tokenizer "
                         f"gives a {tokens.grid} grid of {tokens.codebook_size} codes (model.vq_model).")
    side = tokens.grid[0]
    common = dict(version=section.version, hidden_dim=section.hidden_dim, codebook_size=tokens.codebook_size,
                  depth=section.depth, heads=section.heads, mlp_dim=section.mlp_dim, dropout=section.dropout,
                  nclass=section.nclass)
    if section.version == "v1":  # img_size is only recorded; every VQGAN of the family downsamples by 16
        return build_transformer(dict(common, img_size=16 * side, f_factor=side))
    return build_transformer(dict(common, input_size=side, register=section.register, proj=section.proj))
