"""ADM-suite precision/recall and density/coverage against a direct O(n^2) float64 restatement."""
import numpy as np
import pytest
import torch

from evaluation import density_coverage, precision_recall
from evaluation import manifold


# ---- independent reference: full float64 matrices, explicit differences, full sort ----------------------------

def _ref_sq(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)


def _ref_radii(a, k, pct=None):
    r = np.sort(_ref_sq(a, a), axis=1)[:, k]  # self (0) sits at index 0
    if pct is not None:
        r = np.where(r > np.percentile(r, pct), 0.0, r)
    return r


def _ref_pr(real, fake, k, pct=None):
    d = _ref_sq(real, fake)  # [N, M]
    prec = np.mean((d <= _ref_radii(real, k, pct)[:, None]).any(axis=0))
    rec = np.mean((d <= _ref_radii(fake, k, pct)[None, :]).any(axis=1))
    return prec, rec


def _ref_dc(real, fake, k):
    d = np.sqrt(_ref_sq(real, fake))
    r = np.sqrt(_ref_radii(real, k))
    density = (d < r[:, None]).sum() / (k * d.shape[1])
    coverage = np.mean(d.min(axis=1) < r)
    return density, coverage


def _gauss(seed, n, m, dim=16, shift=0.5):
    g = np.random.default_rng(seed)
    return g.standard_normal((n, dim)).astype(np.float32), (g.standard_normal((m, dim)) + shift).astype(np.float32)


def _ints(seed, n, m, dim=8, dup=True):
    """Small-integer features: exact distances in every precision, many ties and (optionally) duplicated rows."""
    g = np.random.default_rng(seed)
    real = g.integers(0, 3, (n, dim)).astype(np.float32)
    fake = g.integers(1, 4, (m, dim)).astype(np.float32)
    if dup:
        real[: n // 4] = real[n // 4: 2 * (n // 4)]
        fake[:5] = real[:5]
    return real, fake


# ---- precision / recall --------------------------------------------------------------------------------------

@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("blocks", [(10000, 10000), (7, 5), (16, 64)])
def test_matches_reference_random_float32(k, blocks):
    real, fake = _gauss(k, 60, 45)
    got = precision_recall(real, fake, k=k, row_batch_size=blocks[0], col_batch_size=blocks[1], half_precision=False)
    assert got == pytest.approx(_ref_pr(real, fake, k), abs=0)


@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("half", [True, False])
def test_matches_reference_ties_and_duplicates(k, half):
    real, fake = _ints(10 + k, 48, 37)
    ref = _ref_pr(real, fake, k)
    assert 0 < ref[0] < 1 and 0 < ref[1] < 1  # the case is not degenerate
    got = precision_recall(torch.from_numpy(real), torch.from_numpy(fake), k=k, row_batch_size=9, col_batch_size=4,
                           half_precision=half)
    assert got == pytest.approx(ref, abs=0)


def test_radius_counts_duplicates_with_multiplicity():
    x = np.zeros((6, 3), np.float32)
    x[4:] = [[1, 0, 0], [0, 2, 0]]  # four copies of the origin
    r = manifold.knn_radii(x, k=3, row_batch_size=2, col_batch_size=3).numpy()
    np.testing.assert_array_equal(r, _ref_radii(x, 3))
    assert r[0] == 0.0 and r[4] == 1.0  # a point's own copies are neighbours; radii are squared


@pytest.mark.parametrize("pct", [30, 50, 90])
def test_clamp_to_percentile(pct):
    real, fake = _ints(3, 41, 33, dup=False)
    got = precision_recall(real, fake, k=3, row_batch_size=8, col_batch_size=8, clamp_to_percentile=pct)
    assert got == pytest.approx(_ref_pr(real, fake, 3, pct), abs=0)


def test_half_precision_close_to_float32_and_falls_back_on_overflow():
    real, fake = _gauss(5, 80, 70, dim=32)
    p32 = precision_recall(real, fake, half_precision=False)
    p16 = precision_recall(real, fake, half_precision=True)
    assert p16 == pytest.approx(p32, abs=0.05)
    big_real, big_fake = real * 300 + 1000, fake * 300 + 1000  # |x|^2 >> 65504: float16 overflows
    assert precision_recall(big_real, big_fake, half_precision=True) == \
        precision_recall(big_real, big_fake, half_precision=False)
    d = manifold._pairwise_sq_dists(torch.from_numpy(big_real[:4]), torch.from_numpy(big_fake[:3]))
    assert d.dtype == torch.float32 and torch.isfinite(d).all()


def test_identical_sets_and_far_apart_sets():
    real, _ = _gauss(7, 50, 1)
    assert precision_recall(real, real.copy(), k=3, row_batch_size=8, col_batch_size=6) == (1.0, 1.0)
    dup, _ = _ints(8, 40, 8)
    assert precision_recall(dup, dup.copy(), k=3, row_batch_size=8, col_batch_size=6) == (1.0, 1.0)
    assert precision_recall(real, real + 50.0, k=3, row_batch_size=8, col_batch_size=6) == (0.0, 0.0)


def test_blocks_bound_the_distance_matrices(monkeypatch):
    shapes = []
    orig = manifold._pairwise_sq_dists

    def spy(u, v, half_precision=True):
        out = orig(u, v, half_precision)
        shapes.append(tuple(out.shape))
        return out

    monkeypatch.setattr(manifold, "_pairwise_sq_dists", spy)
    real, fake = _gauss(9, 50, 40)
    got = precision_recall(real, fake, k=3, row_batch_size=11, col_batch_size=6, half_precision=False)
    assert got == pytest.approx(_ref_pr(real, fake, 3), abs=0)
    assert shapes and max(s[0] for s in shapes) <= 11 and max(s[1] for s in shapes) <= 6
    density_coverage(real, fake, row_batch_size=11, col_batch_size=6)
    assert max(s[0] for s in shapes) <= 11 and max(s[1] for s in shapes) <= 6


def test_rejects_bad_inputs():
    with pytest.raises(ValueError):
        precision_recall(np.zeros((3, 4)), np.zeros((10, 4)), k=3)  # N <= k
    with pytest.raises(ValueError):
        precision_recall(np.zeros((10, 4)), np.zeros((10, 5)))
    with pytest.raises(ValueError):
        precision_recall(np.zeros(10), np.zeros(10))


# ---- density / coverage --------------------------------------------------------------------------------------

@pytest.mark.parametrize("k", [1, 3, 5])
def test_density_coverage_matches_definition(k):
    real, fake = _gauss(20 + k, 55, 42)
    got = density_coverage(real, fake, k=k, row_batch_size=10, col_batch_size=7)
    assert got == pytest.approx(_ref_dc(real, fake, k), abs=1e-12)
    real_i, fake_i = _ints(30 + k, 44, 36)
    got = density_coverage(real_i, fake_i, k=k, row_batch_size=10, col_batch_size=7)
    assert got == pytest.approx(_ref_dc(real_i, fake_i, k), abs=1e-12)


def test_density_coverage_limits():
    real, _ = _gauss(40, 60, 1)
    density, coverage = density_coverage(real, real.copy(), k=5)
    assert coverage == 1.0 and density > 0.5
    assert density_coverage(real, real + 50.0, k=5) == (0.0, 0.0)
