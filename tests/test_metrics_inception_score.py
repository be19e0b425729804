"""Inception Score against a direct numpy computation, and its streaming / split bookkeeping."""
import numpy as np
import pytest
import torch

from evaluation import InceptionScoreStats, inception_score
from evaluation.inception_score import split_of


def numpy_is(logits: np.ndarray, splits: int) -> float:
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    n = len(p)
    scores = []
    for k in range(splits):
        part = p[k * n // splits:(k + 1) * n // splits]
        kl = part * (np.log(part + 1e-16) - np.log(part.mean(0, keepdims=True) + 1e-16))
        scores.append(np.exp(kl.sum(1).mean()))
    return float(np.mean(scores))


@pytest.fixture
def logits():
    rng = np.random.default_rng(0)
    return rng.normal(0, 3, size=(500, 1008))


@pytest.mark.parametrize("splits", [1, 10])
def test_inception_score_equals_numpy(logits, splits):
    ours = inception_score(torch.from_numpy(logits), splits=splits)
    assert ours == pytest.approx(numpy_is(logits, splits), rel=1e-10)
    assert ours > 2.0


def test_streaming_in_any_order_equals_direct(logits):
    n = len(logits)
    stats = InceptionScoreStats(1008, splits=10, num_samples=n)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    for ids in order.split(37):
        stats.update(torch.from_numpy(logits[ids.numpy()]).float(), ids)
    assert stats.score() == pytest.approx(numpy_is(logits.astype(np.float32).astype(np.float64), 10), rel=1e-9)


def test_split_boundaries():
    ids = torch.arange(10)
    assert split_of(ids, 10, 3).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]
    assert split_of(torch.arange(50_000), 50_000, 10).bincount().tolist() == [5000] * 10


def test_uniform_predictions_give_score_one_and_errors():
    assert inception_score(torch.zeros(8, 1008)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="sample_ids"):
        InceptionScoreStats(1008, splits=2, num_samples=4).update(torch.zeros(2, 1008))
    with pytest.raises(ValueError, match="no samples"):
        InceptionScoreStats(1008).score()
