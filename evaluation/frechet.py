"""Fréchet distance between Gaussians fitted to Inception features, with streaming float64 statistics.

    stats = GaussianStats(2048)
    for feats in batches: stats.update(feats)            # running sum and sum of outer products
    stats.all_reduce()                                   # sums over processes (no-op when single-process)
    fid = frechet_distance(stats.mean(), stats.covariance(), *load_fid_stats("train_imagenet256_stats.npz"))
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Union

import numpy as np
import torch
from scipy import linalg

from evaluation.distributed import all_reduce_sum_
from utils.atomic import atomic_path
from utils.errors import MaskbitError

ArrayLike = Union[np.ndarray, torch.Tensor]


class MissingStatisticsError(MaskbitError, FileNotFoundError):
    """The reference statistics file of an FID computation does not exist."""


class GaussianStats:
    """Running count, sum and sum of outer products of feature vectors, in float64; never stores the features."""

    def __init__(self, dim: int = 2048, device: Union[str, torch.device] = "cpu"):
        self.count = torch.zeros((), dtype=torch.int64, device=device)
        self.sum = torch.zeros(dim, dtype=torch.float64, device=device)
        self.outer_sum = torch.zeros(dim, dim, dtype=torch.float64, device=device)

    def update(self, features: torch.Tensor) -> None:
        """Add features (N, dim)."""
        f = features.to(self.sum)
        self.count += f.shape[0]
        self.sum += f.sum(0)
        self.outer_sum += f.T @ f

    def all_reduce(self) -> None:
        all_reduce_sum_(self.count, self.sum, self.outer_sum)

    def mean(self) -> np.ndarray:
        return (self.sum / self.count).cpu().numpy()

    def covariance(self) -> np.ndarray:
        """Unbiased (N-1) covariance: (sum x x^T - sum x sum x^T / N) / (N - 1)."""
        n = int(self.count)
        if n < 2:
            raise ValueError(f"a covariance needs at least 2 samples, got {n}")
        return ((self.outer_sum - torch.outer(self.sum, self.sum) / n) / (n - 1)).cpu().numpy()


def _as_float64(a: ArrayLike) -> np.ndarray:
    return (a.detach().cpu().double().numpy() if isinstance(a, torch.Tensor) else np.asarray(a, dtype=np.float64))


def frechet_distance(mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike,
                     eps: float = 1e-6) -> float:
    """||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 sqrtm(sigma1 sigma2)), float64, with scipy's `sqrtm`.

    Error handling as ADM / pytorch-fid: a non-finite square root is retried with `eps` added to both diagonals;
    an imaginary part above 1e-3 on the diagonal is an error, smaller ones are dropped. (The official tokenizer
    evaluator falls back to sum(sqrt(diag1 * diag2)) instead; both only matter for degenerate covariances.)
    """
    mu1, mu2, sigma1, sigma2 = (_as_float64(a) for a in (mu1, mu2, sigma1, sigma2))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(f"mismatched Gaussian statistics: mu {mu1.shape} vs {mu2.shape}, "
                         f"sigma {sigma1.shape} vs {sigma2.shape}")
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        warnings.warn(f"FID: sqrtm(sigma1 sigma2) is not finite (singular covariance); adding {eps} to the "
                      f"covariance diagonals")
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"FID: sqrtm(sigma1 sigma2) has an imaginary component of "
                             f"{np.abs(covmean.imag).max():.3g}; the covariances are probably estimated from too "
                             f"few samples")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def save_fid_stats(path: Union[str, os.PathLike], mu: ArrayLike, sigma: ArrayLike, **extra) -> None:
    """Write reference statistics in the format of the official `train_imagenet256_stats.npz` (keys mu, sigma).

    `extra`: more arrays (ADM's mu_s, sigma_s) or scalars describing the file (see evaluation/protocol.py).
    """
    extra = {k: _as_float64(v) if isinstance(v, (np.ndarray, torch.Tensor)) else np.asarray(v)
             for k, v in extra.items()}
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, mu=_as_float64(mu), sigma=_as_float64(sigma), **extra)


def load_fid_stats(path: Union[str, os.PathLike]) -> tuple[np.ndarray, np.ndarray]:
    """Read `mu` (D,) and `sigma` (D,D) from an .npz reference-statistics file, or from a torch file holding `mu` and
    `cov` (Halton-MaskGIT's released `ImageNet_256_train_stats.pt`), loaded weights-only."""
    path = Path(path)
    if not path.is_file():
        raise MissingStatisticsError(f"FID reference statistics '{path}' not found. Set evaluation.fid_stats_path to "
                                f"an .npz with mu/sigma (e.g. ADM's VIRTUAL_imagenet256_labeled.npz or one written "
                                f"by scripts/compute_fid_stats.py)")
    if path.suffix in (".pt", ".pth"):
        mu, sigma = _load_torch_fid_stats(path)
    else:
        with np.load(path, allow_pickle=False) as data:
            if "mu" not in data or "sigma" not in data:
                raise ValueError(f"'{path}' must contain arrays 'mu' and 'sigma', found {sorted(data.keys())}")
            mu, sigma = data["mu"].astype(np.float64), data["sigma"].astype(np.float64)
    if mu.ndim != 1 or sigma.shape != mu.shape * 2:
        raise ValueError(f"'{path}': expected mu (D,) and sigma (D,D), got {mu.shape} and {sigma.shape}")
    return mu, sigma


def _load_torch_fid_stats(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """{"mu": (D,), "cov" (or "sigma"): (D, D)} tensors or arrays of a torch file -> float64 arrays."""
    import torch

    try:
        stats = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"Could not load '{path}' weights-only ({type(err).__name__}: {err}); FID statistics files "
                         f"must hold only tensors/arrays under 'mu' and 'cov'.") from None
    key = "cov" if isinstance(stats, dict) and "cov" in stats else "sigma"
    if not isinstance(stats, dict) or "mu" not in stats or key not in stats:
        found = sorted(stats) if isinstance(stats, dict) else type(stats).__name__
        raise ValueError(f"'{path}' must hold 'mu' and 'cov' (or 'sigma'), found {found}")
    return (torch.as_tensor(stats["mu"], dtype=torch.float64).numpy(),
            torch.as_tensor(stats[key], dtype=torch.float64).numpy())
