"""Evaluation networks and output locations from an experiment config (`evaluation.*` keys)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import torch

from evaluation.inception import FIDInceptionV3, build_inception

DTYPES = {"float64": torch.float64, "float32": torch.float32}


def eval_output_dir(config) -> Path:
    """`experiment.output_dir` if set, else `$WORKSPACE/outputs/<experiment.name>/eval` (WORKSPACE: ./runs)."""
    if config.experiment.output_dir:
        return Path(config.experiment.output_dir)
    return Path(os.environ.get("WORKSPACE", "./runs")) / "outputs" / config.experiment.name / "eval"


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
    from modeling.lpips import LPIPS

    return LPIPS(cfg.lpips_vgg_weights_path, cfg.lpips_heads_path, random_init=cfg.random_init).to(device)
