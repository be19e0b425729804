"""Inception Score from the 1008 Inception logits, in float64 as the official evaluators.

For a split of n images with class probabilities p (softmax of the logits):
    IS = exp( (1/n) * sum_c [ sum_i p_ic log(p_ic + 1e-16) - (sum_i p_ic) log(mean_i p_ic + 1e-16) ] )
and the reported score is the mean over splits. Split k holds images [k*N//s, (k+1)*N//s) in sample order (for
N = 50,000 and s = 10 these are the ADM suite's 10 splits of 5,000). Per-class sums are additive, so the score
can be accumulated batch by batch and over processes (`InceptionScoreStats`).
"""
from __future__ import annotations

from typing import Optional, Union

import torch

from evaluation.distributed import all_reduce_sum_

EPS = 1e-16


def split_of(sample_ids: torch.Tensor, num_samples: int, splits: int) -> torch.Tensor:
    """Split index of each global sample id: the k with k*N//s <= i < (k+1)*N//s."""
    return ((sample_ids + 1) * splits - 1) // num_samples


def _score(prob_sum: torch.Tensor, plogp_sum: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """Per-split IS from per-class sums of p and p log p: (splits, C) -> (splits,)."""
    kl = (plogp_sum - prob_sum * torch.log(prob_sum / n[:, None] + EPS)).sum(1) / n
    return torch.exp(kl)


def inception_score(logits: torch.Tensor, splits: int = 1) -> float:
    """IS of (N, C) logits: softmax over the last dim, mean of the per-split scores."""
    if logits.dim() != 2 or not 1 <= splits <= logits.shape[0]:
        raise ValueError(f"expected (N, C) logits with 1 <= splits <= N, got {tuple(logits.shape)}, splits={splits}")
    stats = InceptionScoreStats(logits.shape[1], splits=splits, num_samples=logits.shape[0])
    stats.update(logits, torch.arange(logits.shape[0]))
    return stats.score()


class InceptionScoreStats:
    """Streaming IS: per split, the count and per-class sums of p and p log(p + 1e-16), in float64."""

    def __init__(self, num_classes: int = 1008, splits: int = 1, num_samples: Optional[int] = None,
                 device: Union[str, torch.device] = "cpu"):
        if splits > 1 and not num_samples:
            raise ValueError("several IS splits need num_samples, to know which sample ids form each split")
        self.splits, self.num_samples = splits, num_samples
        self.count = torch.zeros(splits, dtype=torch.float64, device=device)
        self.prob_sum = torch.zeros(splits, num_classes, dtype=torch.float64, device=device)
        self.plogp_sum = torch.zeros(splits, num_classes, dtype=torch.float64, device=device)

    def update(self, logits: torch.Tensor, sample_ids: Optional[torch.Tensor] = None) -> None:
        """Add (B, C) logits; `sample_ids` (B,) are global sample indices (needed only with several splits)."""
        probs = torch.softmax(logits.double(), dim=-1)
        if self.splits == 1:
            split = torch.zeros(probs.shape[0], dtype=torch.long, device=probs.device)
        elif sample_ids is None:
            raise ValueError("InceptionScoreStats.update needs sample_ids when splits > 1")
        else:
            split = split_of(sample_ids.to(probs.device).long(), self.num_samples, self.splits)
        split = split.to(self.count.device)
        self.count.index_add_(0, split, torch.ones_like(split, dtype=torch.float64))
        self.prob_sum.index_add_(0, split, probs.to(self.prob_sum.device))
        self.plogp_sum.index_add_(0, split, (probs * torch.log(probs + EPS)).to(self.prob_sum.device))

    def all_reduce(self) -> None:
        all_reduce_sum_(self.count, self.prob_sum, self.plogp_sum)

    def score(self) -> float:
        if (self.count == 0).any():
            raise ValueError(f"Inception Score: some of the {self.splits} splits received no samples "
                             f"(counts {self.count.tolist()})")
        return _score(self.prob_sum, self.plogp_sum, self.count).mean().item()
