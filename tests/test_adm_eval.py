"""ADM-suite evaluation: .npz batches, reference statistics with and without precomputed mu/sigma, the feature
cache, ADM's IS splits, and the printed lines of scripts/evaluate_samples.py (tiny Inception stand-in)."""
import json
import os
import re
import sys

import numpy as np
import pytest
import torch

from eval_stand_ins import TinyFeatureNet, assert_job_throughput
from evaluation import frechet_distance, inception_score, precision_recall
from evaluation.adm import (BatchFileError, NpzImages, adm_inception_score, cached_features, evaluate_npz, gaussian,
                            read_reference, summary_lines)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def random_images(n: int, seed: int, size: int = 8) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def features_of(net, images: np.ndarray) -> dict:
    with torch.no_grad():
        return {k: v.numpy() for k, v in net.features(torch.from_numpy(images).permute(0, 3, 1, 2)).items()}


class CountingNet(TinyFeatureNet):
    calls = 0

    def features(self, images):
        CountingNet.calls += images.shape[0]
        return super().features(images)


def test_npz_images_read_ranges_and_bad_files_fail(tmp_path):
    images = random_images(5, 0)
    np.savez(tmp_path / "plain.npz", arr_0=images, arr_1=np.arange(5))
    np.savez_compressed(tmp_path / "compressed.npz", arr_0=images)
    for name in ("plain.npz", "compressed.npz"):
        reader = NpzImages(tmp_path / name)
        assert len(reader) == 5 and np.array_equal(reader.read(1, 4), images[1:4])
        assert np.array_equal(reader.read(0, 5), images)
    np.savez(tmp_path / "float.npz", arr_0=images.astype(np.float32))
    with pytest.raises(BatchFileError, match="uint8"):
        NpzImages(tmp_path / "float.npz")
    np.savez(tmp_path / "other.npz", images=images)
    with pytest.raises(BatchFileError, match="arr_0"):
        NpzImages(tmp_path / "other.npz")
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(BatchFileError, match="readable"):
        read_reference(tmp_path / "text.npz")
    np.savez(tmp_path / "empty.npz", labels=np.arange(3))
    with pytest.raises(BatchFileError, match="neither images"):
        read_reference(tmp_path / "empty.npz")


def test_adm_inception_score_splits_of_5000_style():
    logits = torch.randn(12, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = np.mean([inception_score(logits[i:i + 5]) for i in (0, 5, 10)])  # last split shorter, as ADM
    assert adm_inception_score(logits, split_size=5) == pytest.approx(expected, rel=1e-12)
    assert adm_inception_score(logits) == pytest.approx(inception_score(logits), rel=1e-12)  # N < 5000: one split


@pytest.mark.parametrize("precomputed", [False, True])
def test_reference_batch_with_and_without_precomputed_statistics(tmp_path, precomputed):
    net = TinyFeatureNet()
    ref_images, sample_images = random_images(9, 1), random_images(7, 2)
    np.savez(tmp_path / "samples.npz", arr_0=sample_images)
    ref_feats, sample_feats = features_of(net, ref_images), features_of(net, sample_images)
    rng = np.random.default_rng(3)
    given = {"mu": rng.normal(size=6), "sigma": np.eye(6) * 2, "mu_s": rng.normal(size=4), "sigma_s": np.eye(4)}
    np.savez(tmp_path / "ref.npz", arr_0=ref_images, **(given if precomputed else {}))

    reference = read_reference(tmp_path / "ref.npz")
    assert reference.info["count"] == 9 and len(reference.info["sha256"]) == 64
    metrics = evaluate_npz(reference, tmp_path / "samples.npz", net, tmp_path / "cache", batch_size=4,
                           progress=False, log=lambda *a: None)
    if precomputed:  # ADM's read_statistics: the file's statistics, not those of its images
        ref_pool, ref_spatial = (given["mu"], given["sigma"]), (given["mu_s"], given["sigma_s"])
    else:
        ref_pool, ref_spatial = gaussian(ref_feats["pool"]), gaussian(ref_feats["spatial"])
    assert list(metrics) == ["InceptionScore", "FID", "sFID", "Precision", "Recall", "NumSamples"]
    assert metrics["FID"] == pytest.approx(frechet_distance(*gaussian(sample_feats["pool"]), *ref_pool), rel=1e-10)
    assert metrics["sFID"] == pytest.approx(frechet_distance(*gaussian(sample_feats["spatial"]), *ref_spatial),
                                            rel=1e-10)
    assert metrics["InceptionScore"] == pytest.approx(inception_score(torch.from_numpy(sample_feats["logits"])),
                                                      rel=1e-12)
    precision, recall = precision_recall(ref_feats["pool"], sample_feats["pool"])  # always from the images
    assert (metrics["Precision"], metrics["Recall"]) == (precision, recall)
    np.testing.assert_allclose(gaussian(sample_feats["pool"])[1], np.cov(sample_feats["pool"], rowvar=False))


def test_statistics_only_reference_gives_fid_and_is(tmp_path):
    net = TinyFeatureNet()
    np.savez(tmp_path / "samples.npz", arr_0=random_images(6, 4))
    np.savez(tmp_path / "stats.npz", mu=np.zeros(6), sigma=np.eye(6), source="shards", split="train", count=100,
             what="gfid-reference")
    reference = read_reference(tmp_path / "stats.npz")
    assert reference.images is None and reference.info["split"] == "train" and reference.info["count"] == 100
    metrics = evaluate_npz(reference, tmp_path / "samples.npz", net, tmp_path / "cache", progress=False,
                           log=lambda *a: None)
    assert list(metrics) == ["InceptionScore", "FID", "NumSamples"]


def test_feature_cache_resumes_and_is_keyed_by_file_content(tmp_path):
    net = CountingNet()
    path = tmp_path / "batch.npz"
    np.savez(path, arr_0=random_images(5, 0))
    first = cached_features(NpzImages(path), net, tmp_path / "cache", batch_size=2, chunk_size=2, progress=False)
    assert CountingNet.calls == 5
    chunk_files = sorted((tmp_path / "cache").rglob("chunk*.npz"))
    assert len(chunk_files) == 3
    chunk_files[1].unlink()  # a run killed before chunk 1 was written
    again = cached_features(NpzImages(path), net, tmp_path / "cache", batch_size=2, chunk_size=2, progress=False)
    assert CountingNet.calls == 7  # only chunk 1 (2 images) recomputed
    for key in first:
        assert np.array_equal(first[key], again[key])
    np.savez(path, arr_0=random_images(5, 1))  # same name and shape, other content: no stale features
    changed = cached_features(NpzImages(path), net, tmp_path / "cache", batch_size=2, chunk_size=2, progress=False)
    assert CountingNet.calls == 12 and not np.array_equal(changed["pool"], first["pool"])
    other_net = CountingNet()
    with torch.no_grad():
        other_net.fc.weight.add_(1)  # another network: no stale features either
    cached_features(NpzImages(path), other_net, tmp_path / "cache", batch_size=2, chunk_size=2, progress=False)
    assert CountingNet.calls == 17


def test_cli_prints_the_adm_summary_lines(tmp_path, monkeypatch, capsys):
    sys.path.insert(0, os.path.join(REPO, "scripts"))
    import evaluate_samples

    net = TinyFeatureNet()
    monkeypatch.setattr(evaluate_samples, "build_feature_network", lambda args, device: net)
    np.savez(tmp_path / "ref.npz", arr_0=random_images(8, 5))
    np.savez(tmp_path / "samples.npz", arr_0=random_images(6, 6))
    metrics = evaluate_samples.main([str(tmp_path / "ref.npz"), str(tmp_path / "samples.npz"),
                                     "--cache-dir", str(tmp_path / "cache")])
    out = capsys.readouterr().out
    lines = out.splitlines()
    summary = lines[lines.index("Computing evaluations...") + 1:][:5]
    labels = ["Inception Score", "FID", "sFID", "Precision", "Recall"]
    assert [line.split(": ")[0] for line in summary] == labels
    number = r"-?\d+(\.\d+)?(e[-+]\d+)?"
    assert all(re.fullmatch(rf"[A-Za-z ]+: {number}", line) for line in summary), summary
    keys = ["InceptionScore", "FID", "sFID", "Precision", "Recall"]
    assert [float(line.split(": ")[1]) for line in summary] == [metrics[k] for k in keys]  # repr: exact round trip
    assert summary == summary_lines(metrics)
    record = json.loads((tmp_path / "samples.npz.metrics.json").read_text())
    assert {k: record[k] for k in keys} == {k: metrics[k] for k in keys}
    assert record["reference"]["sha256"] == read_reference(tmp_path / "ref.npz").info["sha256"]
    assert_job_throughput(record["throughput"], images=6, processes=1, output=out)


def test_cli_bad_reference_exits_2(tmp_path, capsys):
    sys.path.insert(0, os.path.join(REPO, "scripts"))
    import evaluate_samples
    from utils.errors import run_main

    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: evaluate_samples.main([str(tmp_path / "missing.npz"), str(tmp_path / "s.npz")]))
    assert exit_info.value.code == 2 and "VIRTUAL_imagenet256_labeled.npz" in capsys.readouterr().err


def test_gfid_warnings_name_sample_count_and_reference_kind(tmp_path):
    from evaluation.protocol import PAPER_NUM_SAMPLES, gfid_warnings, reference_kind

    np.savez(tmp_path / "adm.npz", arr_0=random_images(4, 0), mu=np.zeros(6), sigma=np.eye(6), mu_s=np.zeros(4),
             sigma_s=np.eye(4))
    np.savez(tmp_path / "val.npz", mu=np.zeros(6), sigma=np.eye(6), split="eval", what="rfid-reference")
    adm, val = read_reference(tmp_path / "adm.npz"), read_reference(tmp_path / "val.npz")
    assert reference_kind(adm) == "gfid-reference" and reference_kind(val) == "rfid-reference"
    assert gfid_warnings(PAPER_NUM_SAMPLES, adm) == []
    assert len(gfid_warnings(PAPER_NUM_SAMPLES - 1, adm)) == 1
    warnings = gfid_warnings(PAPER_NUM_SAMPLES, val)
    assert any("rfid-reference statistics file, not a gFID reference" in w for w in warnings)
    assert any("sFID and precision/recall left out" in w for w in warnings)


def test_network_fingerprint_covers_buffers_and_scalars():
    from evaluation.adm import network_fingerprint

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4))  # a 0-dim num_batches_tracked
    before = network_fingerprint(net)
    assert network_fingerprint(net) == before
    net[1].running_var[0] += 1
    assert network_fingerprint(net) != before
    net[1].running_var[0] -= 1
    net[1].num_batches_tracked += 1
    assert network_fingerprint(net) != before
