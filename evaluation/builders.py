"""Evaluation networks and evaluators from an experiment config (`evaluation.*` keys): the one construction path
of the trainers and the evaluation scripts."""
from __future__ import annotations

from typing import Optional

import torch

from evaluation.inception import FIDInceptionV3, build_inception
from evaluation.tokenizer_evaluator import TokenizerEvaluator

DTYPES = {"float64": torch.float64, "float32": torch.float32}


def inception_from_config(config, device: torch.device) -> Optional[FIDInceptionV3]:
    """The FID Inception (None when `evaluation.compute_inception` is off)."""
    cfg = config.evaluation
    if not cfg.compute_inception:
        return None
    if cfg.inception_dtype not in DTYPES:
        raise ValueError(f"evaluation.inception_dtype must be one of {list(DTYPES)}, got {cfg.inception_dtype!r}")
    return build_inception(cfg.inception_weights_path, random_init=cfg.random_init,
                           dtype=DTYPES[cfg.inception_dtype], device=device)


def lpips_from_config(config, device: torch.device):
    """LPIPS-VGG (None when `evaluation.compute_lpips` is off)."""
    cfg = config.evaluation
    if not cfg.compute_lpips:
        return None
    from evaluation.lpips import LPIPS

    return LPIPS(cfg.lpips_vgg_weights_path, cfg.lpips_heads_path, random_init=cfg.random_init).to(device)


def tokenizer_evaluator_from_config(config, tokenizer, device: torch.device) -> TokenizerEvaluator:
    """Reconstruction metrics of `tokenizer` (its codebook, per-bit usage for bit tokens) with the networks the
    config asks for; the weights of those networks are resolved now, so a missing file fails before any work."""
    bits = tokenizer.token_bits if getattr(tokenizer, "is_bit_tokenizer", False) else None
    return TokenizerEvaluator(tokenizer.codebook_size, bits, inception_from_config(config, device),
                              lpips_from_config(config, device), device)
