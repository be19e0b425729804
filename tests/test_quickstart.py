"""The quickstart's code path end to end (--short: a few steps per stage), then a second run that reuses it."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from train_utils import load_script

REPO = Path(__file__).resolve().parent.parent


def finite_numbers(tree):
    if isinstance(tree, dict):
        for value in tree.values():
            yield from finite_numbers(value)
    elif isinstance(tree, list):
        for value in tree:
            yield from finite_numbers(value)
    elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
        yield tree


def test_quickstart_short_writes_every_artefact_and_reuses_stages(tmp_path, monkeypatch, capsys):
    out = tmp_path / "qs"
    env = {**os.environ, "WORKSPACE": str(tmp_path)}
    cmd = [sys.executable, str(REPO / "scripts" / "quickstart.py"), "--output", str(out), "--short"]
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for name in ["reconstructions.png", "samples.png", "editing.png", "loss_curves.png", "metrics.json",
                 "tokenizer/pytorch_model.bin", "generator/pytorch_model.bin", "tokenizer_eval/metrics.json",
                 "tokens/tokens_meta.json"]:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ["PSNR", "SSIM", "CodebookUsage", "BitUsage"]:
        assert key in metrics["tokenizer"]
    for key in ["class_consistency", "per_class_consistency", "frechet_distance", "per_class_frechet_distance",
                "within_class_diversity"]:
        assert key in metrics["generator"]
    for key in ["class_consistency", "untrained_generator_class_consistency", "unmasked_psnr_vs_reconstruction"]:
        assert key in metrics["editing"]
    assert metrics["editing"]["num_images"] == 20 and 0 <= metrics["editing"]["class_consistency"] <= 1
    assert all(math.isfinite(v) for v in finite_numbers(metrics))
    assert len(metrics["floors"]) == 7
    precision = metrics["settings"]["mixed_precision"]  # --precision auto: bf16 where this CPU runs it natively
    assert precision == ("bf16" if load_script("quickstart").native_bf16() else "no")
    if precision == "bf16":  # the generator trained under bf16 autocast, its attention in float32 (a CPU)
        assert "float32 under bf16 autocast" in (out / "generator" / "logs" / "log.txt").read_text()
    assert sum(line.lstrip().startswith(("PASS", "FAIL")) for line in first.stdout.splitlines()) == 7

    second = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.count("reusing") == 7

    # the probe judges the tokenizer's reconstructions and the generator's samples with the quickstart's classifier
    probe = subprocess.run([sys.executable, str(REPO / "scripts" / "quickstart_probe.py"), "--quickstart", str(out),
                            "--generator", str(out / "generator"), "--per-class", "2", "--reconstructions",
                            "--seed", "3", "--variant", "", "--variant", "num_steps=2"],
                           capture_output=True, text=True, env=env, timeout=300)
    assert probe.returncode == 0, probe.stderr[-3000:]
    rebuilt, *samples = [json.loads(line) for line in probe.stdout.splitlines() if line.startswith("{")]
    assert rebuilt["reconstructions"] == 100 and len(rebuilt["per_class"]) == 10
    assert 0 <= rebuilt["classifier_accuracy"] <= 1
    # on the originals it is the quickstart's held-out accuracy (same classifier, images and transform)
    assert rebuilt["classifier_accuracy_on_originals"] == pytest.approx(
        metrics["generator"]["classifier_heldout_accuracy"], abs=1e-3)
    assert [s["variant"] for s in samples] == [{}, {"num_steps": 2}] and {s["seed"] for s in samples} == {3}
    assert all(0 <= s["class_consistency"] <= 1 and len(s["per_class"]) == 10 for s in samples)
    assert all(s["within_class_diversity"] > 0 for s in samples)  # 2 samples per class: one pair each
    # --seed reaches generate_per_class, which draws sample k of every class with seed SEED + k
    probe_script, seeds = load_script("quickstart_probe"), []
    generate = probe_script.generate_per_class
    monkeypatch.setattr(probe_script, "generate_per_class",
                        lambda *args, **kwargs: seeds.append(kwargs["seed"]) or generate(*args, **kwargs))
    probe_script.main(["--quickstart", str(out), "--generator", str(out / "generator"), "--per-class", "1",
                       "--seed", "7", "--variant", "num_steps=2"])
    line = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert seeds == [7] and line["seed"] == 7 and line["within_class_diversity"] is None  # no pairs at 1 per class


def test_data_parallel_launch_keeps_the_global_batch_and_splits_the_cores():
    quickstart = load_script("quickstart")
    config = REPO / "configs" / "quickstart" / "generator_tiny.yaml"
    assert quickstart.per_process_batch(config, 1) == ["training.per_gpu_batch_size=32"]
    assert quickstart.per_process_batch(config, 2) == ["training.per_gpu_batch_size=16"]
    with pytest.raises(SystemExit, match="does not divide"):
        quickstart.per_process_batch(config, 3)
    two = quickstart.accelerate("train_maskbit.py", 2)
    assert two[two.index("--num_processes") + 1] == "2" and "--multi_gpu" in two
    threads = int(two[two.index("--num_cpu_threads_per_process") + 1])
    assert threads == max(1, torch.get_num_threads() // 2)
    one = quickstart.accelerate("train_maskbit.py", 1)
    assert "--multi_gpu" not in one and one[one.index("--num_cpu_threads_per_process") + 1] == str(
        torch.get_num_threads())


def test_probe_variants_are_typed_as_the_sampler_fields_and_unknown_ones_are_named():
    from modeling.sampling import SamplingConfig
    from utils.errors import MaskbitError
    probe = load_script("quickstart_probe")
    changes = probe.parse_variant("guidance_scale=5,num_steps=64,skip_unguided_pass=false", SamplingConfig())
    assert changes == {"guidance_scale": 5.0, "num_steps": 64, "skip_unguided_pass": False}
    assert isinstance(changes["guidance_scale"], float) and isinstance(changes["num_steps"], int)
    assert probe.parse_variant("", SamplingConfig()) == {}
    with pytest.raises(MaskbitError, match="unknown sampler setting 'guidance'"):
        probe.parse_variant("guidance=5", SamplingConfig())


def test_bf16_precision_samples_the_generator_under_autocast_and_keeps_the_rest():
    from utils.config import load_config
    quickstart = load_script("quickstart")
    config = load_config([f"config={REPO / 'configs' / 'quickstart' / 'generator_tiny.yaml'}"])
    plain, bf16 = quickstart.generator_sampling(config, "no"), quickstart.generator_sampling(config, "bf16")
    assert plain.autocast_dtype is None and bf16.autocast_dtype == torch.bfloat16
    assert bf16.replace(autocast_dtype=None) == plain


def test_probe_picks_a_checkpoints_ema_weights_by_step_and_names_the_steps_it_has(tmp_path):
    from utils.errors import MaskbitError
    probe = load_script("quickstart_probe")
    for step, folders in [(1000, ["unwrapped_model", "ema_model"]), (2000, ["unwrapped_model"])]:  # 2000: no EMA
        for folder in folders:
            (tmp_path / f"checkpoint-{step}" / folder).mkdir(parents=True)
            (tmp_path / f"checkpoint-{step}" / folder / "pytorch_model.bin").write_bytes(b"")
        (tmp_path / f"checkpoint-{step}" / "metadata.json").write_text("{}")
    def weights(step: int, folder: str):
        return tmp_path / f"checkpoint-{step}" / folder / "pytorch_model.bin"

    assert probe.generator_weights(tmp_path, raw=False) == tmp_path / "pytorch_model.bin"
    assert probe.generator_weights(tmp_path, raw=False, step=1000) == weights(1000, "ema_model")
    assert probe.generator_weights(tmp_path, raw=True, step=1000) == weights(1000, "unwrapped_model")
    assert probe.generator_weights(tmp_path, raw=False, step=2000) == weights(2000, "unwrapped_model")
    assert probe.generator_weights(tmp_path, raw=True) == weights(2000, "unwrapped_model")  # the last checkpoint
    with pytest.raises(MaskbitError, match=r"no checkpoint of that step; it has \[1000, 2000\]"):
        probe.generator_weights(tmp_path, raw=False, step=1500)
    with pytest.raises(MaskbitError, match="none found"):
        probe.generator_weights(tmp_path / "empty", raw=False, step=1000)
