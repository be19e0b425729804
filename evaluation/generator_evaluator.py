"""gFID and Inception Score of generated images (the official `GeneratorEvaluator`, multi-process).

    evaluator = GeneratorEvaluator(build_inception(), load_fid_stats(path), num_samples=50_000, is_splits=10)
    evaluator.update(images, sample_ids)     # images (B,3,H,W) in [0,1] or uint8; ids select the IS split
    evaluator.all_reduce(); evaluator.result()   # {"InceptionScore": ..., "FID": ...}
"""
from __future__ import annotations

from typing import Optional, Union

import numpy as np
import torch
import torch.nn as nn

from evaluation.frechet import GaussianStats, frechet_distance
from evaluation.inception import to_uint8
from evaluation.inception_score import InceptionScoreStats


def default_is_splits(num_samples: int) -> int:
    """10 splits (of 5,000 for 50k samples, as the ADM suite) from 50,000 samples on, else 1 split."""
    return 10 if num_samples >= 50_000 else 1


class GeneratorEvaluator:
    """Streaming Inception statistics of generated images; FID needs reference statistics (mu, sigma).

    inception: uint8 images -> (features (B, num_features), logits (B, num_classes)), e.g. `build_inception()`.
    """

    def __init__(self, inception: nn.Module, reference: Optional[tuple[np.ndarray, np.ndarray]] = None,
                 num_samples: Optional[int] = None, is_splits: int = 1,
                 device: Union[str, torch.device] = "cpu"):
        self.inception, self.reference = inception, reference
        self.stats = GaussianStats(inception.num_features, device)
        self.is_stats = InceptionScoreStats(inception.num_classes, splits=is_splits, num_samples=num_samples,
                                            device=device)

    @torch.no_grad()
    def update(self, images: torch.Tensor, sample_ids: Optional[torch.Tensor] = None) -> None:
        images = images if images.dtype == torch.uint8 else to_uint8(images)
        pool, logits = self.inception(images)
        self.stats.update(pool)
        self.is_stats.update(logits, sample_ids)

    def all_reduce(self) -> None:
        self.stats.all_reduce()
        self.is_stats.all_reduce()

    def result(self) -> dict:
        out = {"InceptionScore": self.is_stats.score()}
        if self.reference is not None:
            # Samples first, as the ADM suite's sample_stats.frechet_distance(ref_stats).
            out["FID"] = frechet_distance(self.stats.mean(), self.stats.covariance(), *self.reference)
        return out
