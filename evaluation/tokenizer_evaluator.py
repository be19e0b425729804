"""Reconstruction metrics of a tokenizer over a data set (the official `TokenizerEvaluator`, multi-process).

    evaluator = TokenizerEvaluator(codebook_size=4096, num_bits=12, inception=build_inception(), lpips=LPIPS())
    for batch in loader: evaluator.update(originals, reconstructions, info["min_encoding_indices"])
    evaluator.all_reduce()            # sums the statistics over processes (no-op in a single process)
    metrics = evaluator.result()      # then the same dict on every process

All state is sums (counts, per-image metric sums, feature sums and outer products, index histograms), so any
split of the data over processes gives the metrics of a single process.
"""
from __future__ import annotations

from typing import Optional, Union

import torch
import torch.nn as nn
from tqdm import tqdm

from evaluation.codebook import CodebookStats
from evaluation.distributed import all_reduce_sum_
from evaluation.frechet import GaussianStats, frechet_distance
from evaluation.image_metrics import mae, mse, psnr, ssim
from evaluation.inception import to_uint8
from evaluation.inception_score import InceptionScoreStats

PER_IMAGE_METRICS = {"MAE": mae, "MSE": mse, "PSNR": psnr, "SSIM": ssim}


class TokenizerEvaluator:
    """MAE, MSE, PSNR, SSIM, InceptionScore, rFID, LPIPS, CodebookUsage, CodebookEntropy (+ BitUsage for LFQ).

    inception: uint8 images -> (features (B, num_features), logits (B, num_classes)), e.g. `build_inception()`;
        lpips: (x, y) -> (B,) distances. None leaves their metrics out of the result.
    codebook_size: None leaves out the codebook metrics; num_bits (LFQ) adds per-bit usage.
    """

    def __init__(self, codebook_size: Optional[int] = None, num_bits: Optional[int] = None,
                 inception: Optional[nn.Module] = None, lpips: Optional[nn.Module] = None,
                 device: Union[str, torch.device] = "cpu"):
        self.device = torch.device(device)
        self.inception, self.lpips = inception, lpips
        self.codebook_size, self.num_bits = codebook_size, num_bits
        self.reset()

    def reset(self) -> None:
        self.count = torch.zeros((), dtype=torch.int64, device=self.device)
        names = list(PER_IMAGE_METRICS) + (["LPIPS"] if self.lpips is not None else [])
        self.sums = {name: torch.zeros((), dtype=torch.float64, device=self.device) for name in names}
        if self.inception is not None:
            dim, classes = self.inception.num_features, self.inception.num_classes
            self.real_stats, self.fake_stats = GaussianStats(dim, self.device), GaussianStats(dim, self.device)
            self.is_stats = InceptionScoreStats(classes, device=self.device)
        if self.codebook_size is not None:
            self.codebook = CodebookStats(self.codebook_size, self.num_bits, self.device)

    @torch.no_grad()
    def update(self, originals: torch.Tensor, reconstructions: torch.Tensor,
               indices: Optional[torch.Tensor] = None) -> None:
        """originals, reconstructions: (B,3,H,W) in [0,1] (clamp first); indices: token ids of the batch."""
        self.count += originals.shape[0]
        for name, metric in PER_IMAGE_METRICS.items():
            self.sums[name] += metric(reconstructions, originals).sum().to(self.device)
        if self.inception is not None:
            pool, logits = self.inception(to_uint8(torch.cat([reconstructions, originals])))  # one big batch
            (fake_pool, real_pool), fake_logits = pool.chunk(2), logits[:originals.shape[0]]
            self.is_stats.update(fake_logits)
            self.fake_stats.update(fake_pool)
            self.real_stats.update(real_pool)
        if self.lpips is not None:
            self.sums["LPIPS"] += self.lpips(originals, reconstructions).double().sum().to(self.device)
        if self.codebook_size is not None:
            if indices is None:
                raise ValueError("codebook metrics need the token indices (info['min_encoding_indices'])")
            self.codebook.update(indices)

    def all_reduce(self) -> None:
        """Sum the statistics over processes (call once, on every process, after the last update)."""
        all_reduce_sum_(self.count, *self.sums.values())
        if self.inception is not None:
            for stats in (self.real_stats, self.fake_stats, self.is_stats):
                stats.all_reduce()
        if self.codebook_size is not None:
            self.codebook.all_reduce()

    def result(self) -> dict:
        """Metric dict with the reference names, in the reference order (after `all_reduce`: global metrics)."""
        n = int(self.count)
        if n < 1:
            raise ValueError("No examples to evaluate.")
        out = {name: self.sums[name].item() / n for name in PER_IMAGE_METRICS}
        if self.inception is not None:
            out["InceptionScore"] = self.is_stats.score()
            out["rFID"] = frechet_distance(self.real_stats.mean(), self.real_stats.covariance(),
                                           self.fake_stats.mean(), self.fake_stats.covariance())
        if self.lpips is not None:
            out["LPIPS"] = self.sums["LPIPS"].item() / n
        if self.codebook_size is not None:
            out["CodebookUsage"] = self.codebook.usage()
            out["CodebookEntropy"] = self.codebook.entropy()
            if self.num_bits is not None:
                out["BitUsage"] = self.codebook.bit_usage()
        return out


@torch.no_grad()
def evaluate_tokenizer(model: nn.Module, loader, evaluator: TokenizerEvaluator, device: torch.device,
                       progress: bool = True, num_examples: int = 8):
    """Reconstruct every batch of `loader` and gather metrics over all processes.

    Returns (metrics, (originals, reconstructions)) with up to `num_examples` images of the first batch (for a
    grid; None if this process saw no data). Originals and reconstructions are clamped to [0,1] as the reference.
    """
    model.eval()
    evaluator.reset()
    examples = None
    for batch in tqdm(loader, desc="evaluating", unit="batch", disable=not progress):
        images = batch["image"].to(device, non_blocking=True)
        reconstructions, info = model(images)
        originals, reconstructions = images.clamp(0.0, 1.0), reconstructions.clamp(0.0, 1.0)
        codes = info.get("min_encoding_indices") if isinstance(info, dict) else None  # a VAE's posterior has none
        evaluator.update(originals, reconstructions, codes)
        if examples is None:
            examples = (originals[:num_examples].cpu(), reconstructions[:num_examples].cpu())
    evaluator.all_reduce()
    return evaluator.result(), examples
