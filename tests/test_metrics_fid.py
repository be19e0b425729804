"""Fréchet distance, streaming Gaussian statistics and the reference-statistics file format."""
import numpy as np
import pytest
import torch
from scipy import linalg
from scipy.stats import ortho_group

from evaluation import GaussianStats, frechet_distance, load_fid_stats, save_fid_stats


def scipy_fid(mu1, s1, mu2, s2):
    covmean = linalg.sqrtm(s1 @ s2).real
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_closed_form_for_gaussians_with_shared_eigenvectors():
    d = 16
    rng = np.random.default_rng(0)
    q = ortho_group.rvs(d, random_state=1)
    a, b = rng.uniform(0.1, 3.0, d), rng.uniform(0.1, 3.0, d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
    # commuting covariances: Tr(s1 + s2 - 2 (s1 s2)^1/2) = sum (sqrt(a) - sqrt(b))^2
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(torch.from_numpy(mu1), torch.from_numpy(s1), mu2, s2) == pytest.approx(expected, rel=1e-9)


def test_equals_direct_scipy_on_random_features_and_zero_on_itself():
    rng = np.random.default_rng(2)
    f1 = rng.normal(size=(400, 32)) @ rng.normal(size=(32, 32))
    f2 = rng.normal(0.3, 1.2, size=(300, 32)) @ rng.normal(size=(32, 32))
    stats = [(f.mean(0), np.cov(f, rowvar=False)) for f in (f1, f2)]
    fid = frechet_distance(*stats[0], *stats[1])
    assert fid == pytest.approx(scipy_fid(*stats[0], *stats[1]), rel=1e-10)
    assert fid > 1.0
    assert abs(frechet_distance(*stats[0], *stats[0])) < 1e-8 * np.trace(stats[0][1])


def test_singular_covariance_falls_back_to_offset():
    mu = np.zeros(4)
    sigma = np.diag([1.0, 1.0, 0.0, 0.0])
    assert frechet_distance(mu, sigma, mu + 1, sigma) == pytest.approx(4.0, abs=1e-4)


def test_streaming_mean_and_covariance_equal_numpy():
    rng = np.random.default_rng(3)
    feats = rng.normal(2.0, 3.0, size=(257, 24)) @ rng.normal(size=(24, 24))
    stats = GaussianStats(24)
    for chunk in np.array_split(feats, [1, 50, 51, 200]):
        stats.update(torch.from_numpy(chunk).float() if chunk is feats else torch.from_numpy(chunk))
    assert int(stats.count) == 257
    np.testing.assert_allclose(stats.mean(), feats.mean(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(stats.covariance(), np.cov(feats, rowvar=False), rtol=1e-10, atol=1e-10)


def test_stats_file_round_trip_and_errors(tmp_path):
    mu, sigma = np.arange(3.0), np.eye(3)
    save_fid_stats(tmp_path / "stats.npz", mu, sigma)
    got_mu, got_sigma = load_fid_stats(tmp_path / "stats.npz")
    assert np.array_equal(got_mu, mu) and np.array_equal(got_sigma, sigma)
    with pytest.raises(FileNotFoundError, match="evaluation.fid_stats_path"):
        load_fid_stats(tmp_path / "missing.npz")
    np.savez(tmp_path / "bad.npz", mean=mu)
    with pytest.raises(ValueError, match="'mu' and 'sigma'"):
        load_fid_stats(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match="mismatched"):
        frechet_distance(mu, sigma, np.zeros(4), np.eye(4))
