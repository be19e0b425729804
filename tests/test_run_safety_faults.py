"""Fault injection (issue 18): a tiny run SIGKILLed at 20 random points, each time relaunched, reaches bitwise the
weights of an uninterrupted run, and after every kill each file on disk is complete (loads / parses).

Children are forked from a forkserver that has imported torch once, so a launch costs ~0.3 s instead of ~5 s."""
import json
import multiprocessing
import random
import time

import pytest
import torch
from omegaconf import OmegaConf

from data import write_synthetic_shards
from train_utils import assert_bitwise_equal, tiny_config
from utils.run_layout import read_metrics

STEPS, KILLS = 30, 20


def run_trainer(cfg: dict) -> None:
    torch.set_num_threads(1)
    from training import TokenizerTrainer

    TokenizerTrainer(cfg).train()


def check_every_file_is_complete(out):
    for path in out.rglob("*"):
        if not path.is_file() or path.name.endswith(".tmp") or ".partial" in str(path):
            continue
        if path.suffix in (".bin", ".pt"):
            torch.load(path, map_location="cpu", weights_only=True)
        elif path.suffix == ".safetensors":
            from safetensors.torch import load_file
            load_file(path)
        elif path.name in ("run.json", "metadata.json"):
            json.loads(path.read_text())
        elif path.suffix == ".yaml":
            OmegaConf.load(path)
    read_metrics(out) if (out / "metrics.jsonl").exists() else None


@pytest.mark.slow
def test_twenty_random_kills_reach_the_uninterrupted_weights(tmp_path):
    shards = write_synthetic_shards(str(tmp_path / "shards"), num_train=32, num_val=4, resolution=16, seed=0)
    overrides = dict(experiment={"save_every": 1, "eval_every": 100, "generate_every": 100, "log_every": 1,
                                 "keep_last": 2},
                     training={"max_train_steps": STEPS, "per_gpu_batch_size": 2})
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["torch", "training", "data", "modeling", "accelerate"])

    def timed_run(folder, **extra) -> float:
        child = context.Process(target=run_trainer,
                                args=(tiny_config(shards, tmp_path / folder, **{**overrides, **extra}),))
        began = time.time()
        child.start()
        child.join(300)
        assert child.exitcode == 0
        return time.time() - began

    timed_run("warm-up", training={"max_train_steps": 1, "per_gpu_batch_size": 2})  # starts the forkserver
    setup = timed_run("setup", training={"max_train_steps": 1, "per_gpu_batch_size": 2})  # launch + build + 1 step
    total = timed_run("straight")
    # kill points scale with this machine's speed: anywhere in the launch and build, or up to ~1/8 of the steps later
    window = setup + max(total - setup, 0.05) / 8

    out = tmp_path / "killed"
    cfg = tiny_config(shards, out, **overrides)
    rng, kills, deadline = random.Random(0), 0, time.time() + 240
    while kills < KILLS and time.time() < deadline:
        child = context.Process(target=run_trainer, args=(cfg,))
        child.start()
        child.join(rng.uniform(0.05, window))
        if child.exitcode is None:
            child.kill()  # SIGKILL: no cleanup of any kind
            child.join()
            kills += 1
            check_every_file_is_complete(out)
        elif (out / "pytorch_model.bin").exists():
            assert child.exitcode == 0
            break  # finished before the next kill: nothing left to interrupt
        else:
            pytest.fail(f"a relaunch failed with exit code {child.exitcode}")
    assert kills >= 10, f"only {kills} kills landed (kill window {window:.2f} s)"
    final = context.Process(target=run_trainer, args=(cfg,))
    final.start()
    final.join(300)
    assert final.exitcode == 0
    check_every_file_is_complete(out)
    load = lambda p: torch.load(p, map_location="cpu", weights_only=True)  # noqa: E731
    for name in ("pytorch_model.bin", f"checkpoint-{STEPS}/training_state.pt",
                 f"checkpoint-{STEPS}/ema_model/pytorch_model.bin"):
        assert_bitwise_equal(load(tmp_path / "straight" / name), load(out / name), name)
    history = json.loads((out / "run.json").read_text())["history"]
    assert len(history) >= 2  # it really was resumed
    print(f"{kills} kills, {len(history)} starts recorded, {sum(1 for e in history if e['event'] == 'resumed')} resumes")
