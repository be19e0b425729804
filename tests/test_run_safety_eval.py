"""Evaluation caches keyed by content (issue 18, item 7): other weights never reuse old samples; two CPU processes
split the work."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from utils.errors import MaskbitError

from test_eval_maskbit import TINY, checkpoints  # noqa: F401  (the tiny tokenizer/generator weights fixture)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def weights(checkpoints):  # noqa: F811
    from modeling import build_generator

    torch.manual_seed(1)
    torch.save(build_generator(TINY).state_dict(), checkpoints / "gen_other.bin")
    return checkpoints


def args(root, generator, out, *extra):
    return [f"config={root / 'tiny.yaml'}", f"experiment.vqgan_checkpoint={root / 'tok.bin'}",
            f"experiment.generator_checkpoint={root / generator}", "evaluation.batch_size=3",
            "evaluation.compute_inception=false", "evaluation.num_samples=7", f"experiment.output_dir={out}", *extra]


def test_other_weights_never_reuse_cached_samples(weights):
    sys.path.insert(0, os.path.join(REPO, "scripts"))
    import eval_maskbit

    out = weights / "out"
    eval_maskbit.main(args(weights, "gen.bin", out))
    first = np.load(out / "samples_7x16x16x3.npz")["arr_0"]
    manifest = json.loads((out / "samples" / "manifest.json").read_text())
    assert len(manifest["generator_sha256"]) == 64 and "sampling" in manifest
    (out / "gen_copy.bin").write_bytes((weights / "gen.bin").read_bytes())  # same content, other path: reused
    eval_maskbit.main(args(weights, "out/gen_copy.bin", out))

    with pytest.raises(MaskbitError, match="generator_sha256.*experiment.overwrite=true"):
        eval_maskbit.main(args(weights, "gen_other.bin", out))
    assert np.array_equal(np.load(out / "samples_7x16x16x3.npz")["arr_0"], first)  # nothing touched

    eval_maskbit.main(args(weights, "gen_other.bin", out, "experiment.overwrite=true"))
    second = np.load(out / "samples_7x16x16x3.npz")["arr_0"]
    assert not np.array_equal(first, second)
    (moved,) = [p for p in out.iterdir() if p.name.startswith("replaced-")]
    assert np.array_equal(np.load(moved / "samples_7x16x16x3.npz")["arr_0"], first)  # kept, not deleted

    with pytest.raises(MaskbitError, match=r"sampling"):  # other sampler settings: not reused either
        eval_maskbit.main(args(weights, "gen_other.bin", out, "model.mlm_model.num_steps=2"))


def test_two_cpu_processes_split_the_work(weights):
    out = weights / "two_cpu"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           os.path.join(REPO, "scripts", "eval_maskbit.py"), *args(weights, "gen.bin", out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1",
           "PYTHONPATH": os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=REPO, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    made = dict(re.findall(r"\[rank (\d)\] generated (\d+) samples", result.stdout + result.stderr))
    assert made == {"0": "4", "1": "3"}  # chunks 0,2 (3+1 samples) on rank 0, chunk 1 (3 samples) on rank 1
    assert np.load(out / "samples_7x16x16x3.npz")["arr_0"].shape[0] == 7
    assert json.loads((out / "metrics.json").read_text())["NumSamples"] == 7
