"""Two CPU processes under `accelerate launch`: identical weights on both ranks, same LR schedule as one process.

`accelerate launch --cpu --num_processes 2` starts ONE process in accelerate 1.x (its simple launcher only spawns
several CPU processes through mpirun); two gloo processes need the distributed launcher with CPU forced:
`ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 ...`.
"""
import json
import socket
import subprocess
import sys

import torch

from data import write_synthetic_shards
from training.run_setup import ddp_kwargs
from utils.run_layout import read_metrics
from utils.schema import TrainingConfig
from train_utils import REPO, subprocess_env, tiny_config, write_yaml


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_two_ranks(config_yaml, *overrides: str) -> None:
    """tests/helpers/train_and_dump_ranks.py as two gloo processes under `accelerate launch`."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(free_port()), str(REPO / "tests" / "helpers" / "train_and_dump_ranks.py"),
               f"config={config_yaml}", *overrides]
    env = dict(subprocess_env(), ACCELERATE_USE_CPU="1")
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-4000:]


def test_two_processes_train_in_lockstep(tmp_path):
    shards = write_synthetic_shards(str(tmp_path / "shards"), num_train=64, num_val=8, resolution=16, seed=0)
    out = tmp_path / "out"
    cfg = write_yaml(tiny_config(shards, out), tmp_path / "cfg.yaml")  # 6 steps, GAN from 3, eval at 6
    train_two_ranks(cfg)
    rank0 = torch.load(out / "rank0.pt", weights_only=True)
    rank1 = torch.load(out / "rank1.pt", weights_only=True)
    assert rank0.keys() == rank1.keys() and any(k.startswith("discriminator.") for k in rank0)
    assert [k for k in rank0 if not torch.equal(rank0[k], rank1[k])] == []
    assert "2 process(es)" in (out / "logs" / "log.txt").read_text()
    assert (out / "checkpoint-6" / "random_states_1.pt").is_file()
    # the LR schedule is in optimizer steps, whatever the process count (same values as the 1-process run)
    train = [r for r in read_metrics(out / "metrics.jsonl") if "lr" in r]
    assert [r["step"] for r in train] == [2, 4, 6]
    assert torch.allclose(torch.tensor([r["lr/tokenizer"] for r in train], dtype=torch.float64),
                          torch.tensor([1e-3, 5.5e-4, 1e-4], dtype=torch.float64), rtol=1e-12)
    assert torch.allclose(torch.tensor([r["lr/discriminator"] for r in train], dtype=torch.float64),
                          torch.tensor([0.0, 5e-4, 1e-4], dtype=torch.float64), rtol=1e-12)


def test_ddp_bucket_settings_change_the_all_reduce_not_the_results(tmp_path):
    """training.ddp_*: DDP runs with them (here tiny buckets, so the gradients travel in many), and the weights
    after training equal those of PyTorch's default settings bit for bit."""
    shards = write_synthetic_shards(str(tmp_path / "shards"), num_train=64, num_val=8, resolution=16, seed=0)
    runs = {}
    for name, overrides in {"default": [], "tuned": ["training.ddp_bucket_cap_mb=0.01",
                                                     "training.ddp_gradient_as_bucket_view=true"]}.items():
        out = tmp_path / name
        train_two_ranks(write_yaml(tiny_config(shards, out), tmp_path / f"{name}.yaml"), *overrides)
        runs[name] = (torch.load(out / "rank0.pt", weights_only=True),
                      json.loads((out / "ddp_rank0.json").read_text()))
    (default, default_ddp), (tuned, tuned_ddp) = runs["default"], runs["tuned"]
    assert set(default_ddp) == set(tuned_ddp) == {"tokenizer", "discriminator"}
    assert all(d == {"bucket_bytes_cap": 25 * 2**20, "gradient_as_bucket_view": False} for d in default_ddp.values())
    assert all(d == {"bucket_bytes_cap": int(0.01 * 2**20), "gradient_as_bucket_view": True}
               for d in tuned_ddp.values())
    assert default.keys() == tuned.keys()
    assert [k for k in default if not torch.equal(default[k], tuned[k])] == []


def test_ddp_settings_default_to_pytorchs():
    assert ddp_kwargs(TrainingConfig()).to_kwargs() == {}  # nothing passed on: DDP's own defaults, first bucket too
    assert ddp_kwargs(TrainingConfig(ddp_bucket_cap_mb=100, ddp_gradient_as_bucket_view=True)).to_kwargs() == {
        "bucket_cap_mb": 100, "gradient_as_bucket_view": True}


def test_a_divergence_stops_both_processes_without_a_checkpoint(tmp_path):
    """The non-finite guard all-reduces its verdict only every few iterations on several processes: both ranks
    still stop at the same point (no rank left waiting in a collective) and nothing diverged is saved."""
    shards = write_synthetic_shards(str(tmp_path / "shards"), num_train=64, num_val=8, resolution=16, seed=0)
    out = tmp_path / "out"
    cfg = tiny_config(shards, out, optimizer={"params": {"learning_rate": 1e30}},
                      training={"max_train_steps": 30}, experiment={"save_every": 25, "eval_every": 100})
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(free_port()), str(REPO / "scripts" / "train_tokenizer.py"),
               f"config={write_yaml(cfg, tmp_path / 'cfg.yaml')}"]
    env = dict(subprocess_env(), ACCELERATE_USE_CPU="1")
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert result.returncode != 0
    assert result.stderr.count("Non-finite loss at optimizer step") == 2, result.stderr[-4000:]  # both ranks
    assert not list(out.glob("checkpoint-*"))
