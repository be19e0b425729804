"""k-NN manifold metrics on Inception features: ADM-suite precision/recall and Naeem et al. density/coverage.

    precision, recall = precision_recall(real_feats, fake_feats)          # [N, 2048], [M, 2048]
    density, coverage = density_coverage(real_feats, fake_feats, k=5)

``precision_recall`` reproduces ``ManifoldEstimator`` / ``DistanceBlock`` of the ADM evaluation suite
(openai/guided-diffusion, ``evaluations/evaluator.py``; itself adapted from Kynkäänniemi et al. 2019):

* Distances are *squared* Euclidean distances, never square-rooted, computed per block as
  ``max(|u|^2 - 2 u v^T + |v|^2, 0)`` (evaluated in that order).
* ADM first evaluates each block with both inputs cast to float16 and casts the result to float32; only if
  that block has a non-finite entry (float16 overflow) is the block recomputed in float32. This is the
  default here (``half_precision=True``); ``half_precision=False`` always uses float32. float16 rounding
  accumulates differently on different backends, so the half-precision path matches ADM up to rounding, not
  bit for bit; features whose distances are exact in float16 (small integers) give identical results.
* Radius of a point = the value at 0-based index ``k`` of its row of distances to the *whole* set, the
  point itself included (ADM: ``np.partition(..., kth=arange(k + 1))[:, nhood_sizes]`` with
  ``nhood_sizes=(3,)``). The self-distance normally fills index 0, so this is the distance to the k-th
  nearest *other* point; ties and duplicated points are counted with multiplicity (a set with more than
  ``k`` copies of a point gives it radius 0).
* ``clamp_to_percentile`` defaults to ``None`` (no clamping). When given, radii strictly above
  ``np.percentile(radii, p)`` (linear interpolation) are set to 0, not dropped.
* Membership uses ``<=``: a fake point counts towards precision when ``d(fake, real_i) <= radius(real_i)``
  for some real point i, and symmetrically for recall with the fake radii. ADM's ``eps=1e-5`` only enters
  its realism score, which is not computed here, so it has no effect on precision or recall.

Unlike ADM's ``manifold_radii`` (which holds a full ``row_batch_size x N`` strip), the k-th neighbour is
tracked across column blocks with a running top-(k+1), so no distance matrix larger than
``row_batch_size x col_batch_size`` is ever built. The result is the same multiset minimum.

``density_coverage`` follows Naeem et al. 2020 ("Reliable Fidelity and Diversity Metrics for Generative
Models", reference code clovaai/generative-evaluation-prdc) with the same radius convention (k-th nearest
other real point) and the paper's strict ``<`` comparisons, using float32 distances by default.
"""
from __future__ import annotations

from typing import Optional, Tuple, Union

import numpy as np
import torch

ArrayLike = Union[np.ndarray, torch.Tensor]

__all__ = ["density_coverage", "knn_radii", "precision_recall"]


def _as_features(x: ArrayLike, device: Optional[torch.device] = None) -> torch.Tensor:
    """[N, D] array or tensor -> float32 tensor (on ``device`` if given, else where it already lives)."""
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if t.ndim != 2:
        raise ValueError(f"features must have shape [N, D], got {tuple(t.shape)}")
    return t.to(device=device if device is not None else t.device, dtype=torch.float32)


def _feature_pair(real: ArrayLike, fake: ArrayLike) -> Tuple[torch.Tensor, torch.Tensor]:
    """(real [N, D], fake [M, D]) as float32 tensors on real's device, with the same D."""
    x = _as_features(real)
    y = _as_features(fake, x.device)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature dimensions differ: {x.shape[1]} vs {y.shape[1]}")
    return x, y


def _sq_dists_in(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """[n, D], [m, D] (same dtype) -> [n, m] squared distances ``max(|u|^2 - 2uv^T + |v|^2, 0)`` in that dtype."""
    norm_u = u.square().sum(dim=1).reshape(-1, 1)
    norm_v = v.square().sum(dim=1).reshape(1, -1)
    return (norm_u - 2 * (u @ v.T) + norm_v).clamp_min(0.0)  # clamp_min keeps NaN, so overflow is detected


def _pairwise_sq_dists(u: torch.Tensor, v: torch.Tensor, half_precision: bool = True) -> torch.Tensor:
    """[n, D], [m, D] float32 -> [n, m] float32 squared distances, ADM style.

    With ``half_precision`` the block is computed from float16 copies of the inputs and falls back to float32
    only when that result contains a non-finite value (ADM's ``tf.cond`` on ``is_finite``)."""
    if half_precision:
        d16 = _sq_dists_in(u.half(), v.half())
        if bool(torch.isfinite(d16).all()):
            return d16.float()
    return _sq_dists_in(u, v)


def _blocks(n: int, size: int):
    if size < 1:
        raise ValueError(f"batch sizes must be >= 1, got {size}")
    for begin in range(0, n, size):
        yield begin, min(begin + size, n)


def knn_radii(
    features: ArrayLike,
    k: int = 3,
    row_batch_size: int = 10000,
    col_batch_size: int = 10000,
    half_precision: bool = True,
    clamp_to_percentile: Optional[float] = None,
) -> torch.Tensor:
    """Squared k-NN radii of a feature set, ADM convention (see the module docstring).

    :param features: [N, D] features, N > k.
    :return: [N] float32 tensor; entry i is the 0-based ``k``-th smallest of ``d(x_i, x_j)`` over all j
             (self included), i.e. the squared distance to the k-th nearest other point.
    """
    x = _as_features(features)
    n = x.shape[0]
    if k < 1 or n <= k:
        raise ValueError(f"need 1 <= k < N, got k={k}, N={n}")
    radii = torch.empty(n, dtype=torch.float32, device=x.device)
    for r0, r1 in _blocks(n, row_batch_size):
        best = None  # [rows, <= k+1] smallest distances seen so far, with multiplicity
        for c0, c1 in _blocks(n, col_batch_size):
            d = _pairwise_sq_dists(x[r0:r1], x[c0:c1], half_precision)
            cand = d if best is None else torch.cat([best, d], dim=1)
            best = cand.topk(min(k + 1, cand.shape[1]), dim=1, largest=False).values
        radii[r0:r1] = best.max(dim=1).values
    if clamp_to_percentile is not None:
        r = radii.cpu().numpy()
        r[r > np.percentile(r, clamp_to_percentile)] = 0
        radii = torch.from_numpy(r).to(x.device)
    return radii


def precision_recall(
    real: ArrayLike,
    fake: ArrayLike,
    k: int = 3,
    row_batch_size: int = 10000,
    col_batch_size: int = 10000,
    half_precision: bool = True,
    clamp_to_percentile: Optional[float] = None,
) -> Tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) exactly as the ADM evaluator computes them.

    :param real: [N, D] reference features (ADM's ``ref_batch``), N > k.
    :param fake: [M, D] sample features, M > k; computed on ``real``'s device.
    :param k: neighbourhood size (ADM: ``nhood_sizes=(3,)``).
    :param row_batch_size: rows (real, or the set itself for radii) per distance block.
    :param col_batch_size: columns (fake) per distance block.
    :param half_precision: ADM's float16-with-float32-fallback distances (default) or plain float32.
    :param clamp_to_percentile: ADM's optional radius pruning (default ``None``).
    :return: ``(precision, recall)``: the fraction of fake points within ``radius(real_i)`` of some real point
             i, and the fraction of real points within ``radius(fake_j)`` of some fake point j (``<=``).
    """
    x, y = _feature_pair(real, fake)
    opts = dict(k=k, row_batch_size=row_batch_size, col_batch_size=col_batch_size,
                half_precision=half_precision, clamp_to_percentile=clamp_to_percentile)
    radii_real = knn_radii(x, **opts)
    radii_fake = knn_radii(y, **opts)
    real_in = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)  # real inside some fake ball
    fake_in = torch.zeros(y.shape[0], dtype=torch.bool, device=x.device)  # fake inside some real ball
    for r0, r1 in _blocks(x.shape[0], row_batch_size):
        for c0, c1 in _blocks(y.shape[0], col_batch_size):
            d = _pairwise_sq_dists(x[r0:r1], y[c0:c1], half_precision)
            real_in[r0:r1] |= (d <= radii_fake[None, c0:c1]).any(dim=1)
            fake_in[c0:c1] |= (d <= radii_real[r0:r1, None]).any(dim=0)
    return float(fake_in.double().mean()), float(real_in.double().mean())


def density_coverage(
    real: ArrayLike,
    fake: ArrayLike,
    k: int = 5,
    row_batch_size: int = 10000,
    col_batch_size: int = 10000,
    half_precision: bool = False,
) -> Tuple[float, float]:
    """Density and coverage (Naeem et al. 2020) with the k-th-nearest-other-real-point radius.

    :param real: [N, D] reference features, N > k.
    :param fake: [M, D] sample features.
    :return: ``(density, coverage)`` with ``density = sum_j #{i : d(real_i, fake_j) < r_i} / (k M)`` (can exceed
             1) and ``coverage = #{i : min_j d(real_i, fake_j) < r_i} / N``; comparisons are strict as in the
             paper, and are done on squared float32 distances (``half_precision=False`` by default).
    """
    x, y = _feature_pair(real, fake)
    radii = knn_radii(x, k=k, row_batch_size=row_batch_size, col_batch_size=col_batch_size,
                      half_precision=half_precision)
    count = 0
    covered = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    for r0, r1 in _blocks(x.shape[0], row_batch_size):
        for c0, c1 in _blocks(y.shape[0], col_batch_size):
            inside = _pairwise_sq_dists(x[r0:r1], y[c0:c1], half_precision) < radii[r0:r1, None]
            count += int(inside.sum())
            covered[r0:r1] |= inside.any(dim=1)
    return count / (k * y.shape[0]), float(covered.double().mean())
