"""gFID pipeline: labels, process-count-independent resumable sample chunks, ADM .npz, FID/IS from chunks."""
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from eval_stand_ins import TinyFeatureNet, assert_job_throughput, free_port
from evaluation import (GeneratorEvaluator, SampleChunks, class_labels, frechet_distance, generate_chunks,
                        inception_score, iterate_chunk_batches, save_fid_stats)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = {"model": {"vq_model": {"hidden_channels": 32, "channel_mult": [1, 2], "num_resolutions": 2,
                               "num_res_blocks": 1, "token_size": 4},
                  "mlm_model": {"hidden_dim": 32, "depth": 1, "heads": 2, "mlp_dim": 64, "num_classes": 4,
                                "num_steps": 3}},
        "dataset": {"preprocessing": {"resolution": 16}}}


def test_labels_are_a_repeated_seeded_permutation():
    labels = class_labels(12, 4, seed=3)
    assert labels.bincount().tolist() == [3] * 4
    assert torch.equal(labels[:4].sort().values, torch.arange(4)) and torch.equal(labels[:4], labels[4:8])
    assert torch.equal(labels, class_labels(12, 4, seed=3)) and not torch.equal(labels, class_labels(12, 4, seed=4))
    assert class_labels(6, 4, seed=0)[4:].tolist() == class_labels(6, 4, seed=0)[:2].tolist()


def fake_sampler(labels, seeds):
    """Images that depend only on each sample's own label and seed (as the real sampler guarantees)."""
    return torch.stack([torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(int(s))) * (1 + int(l)) / 4
                        for l, s in zip(labels, seeds)])


def test_chunks_do_not_depend_on_process_count_and_resume(tmp_path):
    labels = class_labels(10, 4, seed=0)
    one = SampleChunks(tmp_path / "one", 10, 3, {"seed": 5})
    generate_chunks(fake_sampler, one, labels, seed=5, progress=False)
    two = SampleChunks(tmp_path / "two", 10, 3, {"seed": 5})
    generate_chunks(fake_sampler, two, labels, seed=5, rank=1, world_size=2, progress=False)  # "killed" rank 0
    assert two.missing() == [0, 2]
    generate_chunks(fake_sampler, two, labels, seed=5, rank=0, world_size=1, progress=False)  # resumed alone
    calls = []
    generate_chunks(lambda *a: calls.append(a), two, labels, seed=5, progress=False)  # nothing left to do
    assert not calls
    a = np.load(one.write_npz(tmp_path / "one.npz", labels))
    b = np.load(two.write_npz(tmp_path / "two.npz", labels))
    assert a["arr_0"].shape == (10, 8, 8, 3) and a["arr_0"].dtype == np.uint8
    assert np.array_equal(a["arr_0"], b["arr_0"]) and np.array_equal(a["arr_1"], labels.numpy())
    with pytest.raises(ValueError, match="another run"):
        SampleChunks(tmp_path / "one", 10, 3, {"seed": 6})


def test_generator_evaluator_over_chunks_in_any_order(tmp_path):
    labels = class_labels(12, 4, seed=0)
    chunks = SampleChunks(tmp_path, 12, 5, {})
    generate_chunks(fake_sampler, chunks, labels, seed=0, progress=False)
    net = TinyFeatureNet()
    ref_feats = net(torch.randint(0, 256, (20, 3, 8, 8), dtype=torch.uint8))[0].detach().numpy()
    reference = (ref_feats.mean(0), np.cov(ref_feats, rowvar=False))
    evaluator = GeneratorEvaluator(net, reference, num_samples=12, is_splits=2)
    for rank in (1, 0):  # two "processes", reduced by summing their statistics
        for images, ids in iterate_chunk_batches(chunks, rank, 2, batch_size=2):
            evaluator.update(images, ids)
    out = evaluator.result()
    all_images = torch.from_numpy(np.concatenate([chunks.load(k) for k in range(3)])).permute(0, 3, 1, 2)
    feats, logits = net(all_images)
    feats = feats.detach().numpy()
    assert out["FID"] == pytest.approx(frechet_distance(feats.mean(0), np.cov(feats, rowvar=False), *reference))
    assert out["InceptionScore"] == pytest.approx(inception_score(logits.detach(), splits=2), rel=1e-10)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    from modeling import build_generator, build_tokenizer

    root = tmp_path_factory.mktemp("eval_maskbit")
    torch.manual_seed(0)
    torch.save(build_tokenizer(TINY).state_dict(), root / "tok.bin")
    torch.save(build_generator(TINY).state_dict(), root / "gen.bin")
    (root / "tiny.yaml").write_text(json.dumps(TINY))
    return root


def test_script_samples_identical_with_one_and_two_processes(checkpoints, monkeypatch):
    root = checkpoints
    sys.path.insert(0, os.path.join(REPO, "scripts"))
    import eval_maskbit

    net = TinyFeatureNet()
    feats = net(torch.randint(0, 256, (16, 3, 16, 16), dtype=torch.uint8))[0].detach().numpy()
    save_fid_stats(root / "stats.npz", feats.mean(0), np.cov(feats, rowvar=False))
    monkeypatch.setattr(eval_maskbit, "inception_from_config", lambda config, device: net)
    official_flags = ["--config", str(root / "tiny.yaml"), "--tokenizer", str(root / "tok.bin"),
                      "--generator", str(root / "gen.bin"), "--batchsize", "3"]
    common = ["evaluation.num_samples=7", f"evaluation.fid_stats_path={root / 'stats.npz'}"]
    metrics = eval_maskbit.main(official_flags + common + [f"experiment.output_dir={root / 'one'}"])
    assert list(metrics) == ["InceptionScore", "FID", "NumSamples"] and metrics["NumSamples"] == 7  # mu/sigma only
    record = json.loads((root / "one" / "metrics.json").read_text())
    assert {k: record[k] for k in metrics} == metrics
    protocol = record["protocol"]
    assert protocol["num_samples"] == 7 and protocol["seeds"] == [0] and protocol["samples_per_class"] == "1-2"
    assert protocol["reference"]["sha256"] == hashlib.sha256((root / "stats.npz").read_bytes()).hexdigest()
    assert protocol["sampling"]["num_steps"] == 3
    assert any("7 samples" in w for w in record["warnings"]) and any("unknown" in w for w in record["warnings"])
    assert_job_throughput(record["throughput"], images=7, processes=1)

    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           os.path.join(REPO, "scripts", "eval_maskbit.py"), f"config={root / 'tiny.yaml'}",
           f"experiment.vqgan_checkpoint={root / 'tok.bin'}", f"experiment.generator_checkpoint={root / 'gen.bin'}",
           "evaluation.batch_size=3", "evaluation.compute_inception=false", *common[:1],
           f"experiment.output_dir={root / 'two'}"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=REPO,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Results for 4 bits with 3 steps." in result.stdout
    throughput = json.loads((root / "two" / "metrics.json").read_text())["throughput"]  # (--cpu: maybe 1 process)
    assert_job_throughput(throughput, images=7, processes=throughput["num_processes"], output=result.stdout)
    one = np.load(root / "one" / "samples_7x16x16x3.npz")["arr_0"]
    two = np.load(root / "two" / "samples_7x16x16x3.npz")["arr_0"]
    assert one.shape == (7, 16, 16, 3) and one.std() > 0
    assert np.array_equal(one, two)


def test_multi_seed_report_with_one_and_two_processes(checkpoints, tmp_path, monkeypatch, capsys):
    """evaluation.seeds=[0,1]: one scored sample set per seed + mean/std; the same with 2 gloo processes."""
    root = checkpoints
    sys.path.insert(0, os.path.join(REPO, "scripts"))
    import eval_maskbit

    images = np.random.default_rng(0).integers(0, 256, (9, 16, 16, 3), dtype=np.uint8)
    np.savez(tmp_path / "ref.npz", arr_0=images)  # an ADM-style reference batch: images, statistics computed
    monkeypatch.setattr(eval_maskbit, "inception_from_config", lambda config, device: TinyFeatureNet())
    args = [f"config={root / 'tiny.yaml'}", f"experiment.vqgan_checkpoint={root / 'tok.bin'}",
            f"experiment.generator_checkpoint={root / 'gen.bin'}", "evaluation.batch_size=3",
            "evaluation.num_samples=5", "evaluation.seeds=[0,1]", f"evaluation.fid_stats_path={tmp_path / 'ref.npz'}"]
    one = eval_maskbit.main(args + [f"experiment.output_dir={tmp_path / 'one'}"])
    out = capsys.readouterr().out
    keys = ["InceptionScore", "FID", "sFID", "Precision", "Recall"]
    assert list(one["per_seed"]) == ["0", "1"] and list(one["mean"]) == keys
    values = {k: [one["per_seed"][s][k] for s in ("0", "1")] for k in keys}
    assert values["FID"][0] != values["FID"][1]
    for k in keys:
        assert one["mean"][k] == pytest.approx(np.mean(values[k]), rel=1e-12)
        assert one["std"][k] == pytest.approx(np.std(values[k], ddof=1), rel=1e-12)
    assert f"FID: {one['mean']['FID']!r} +- {one['std']['FID']!r} (mean +- std over seeds [0, 1])" in out
    assert "seed 1:" in out and "WARNING: gFID from 5 samples" in out
    assert_job_throughput(json.loads((tmp_path / "one" / "metrics.json").read_text())["throughput"], images=10,
                          processes=1, output=out)  # 5 samples x 2 seeds

    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(free_port()),
           os.path.join(REPO, "tests", "helpers", "eval_maskbit_tiny_inception.py"), *args,
           f"experiment.output_dir={tmp_path / 'two'}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1",
           "PYTHONPATH": os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[rank 1] generated" in result.stdout  # really two processes
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert_job_throughput(two["throughput"], images=10, processes=2, output=result.stdout)
    for seed in ("0", "1"):
        a = np.load(tmp_path / "one" / f"seed_{seed}" / "samples_5x16x16x3.npz")["arr_0"]
        b = np.load(tmp_path / "two" / f"seed_{seed}" / "samples_5x16x16x3.npz")["arr_0"]
        assert np.array_equal(a, b)
        for k in keys:
            assert two["per_seed"][seed][k] == pytest.approx(one["per_seed"][seed][k], rel=1e-9)
