"""Two "machines" on 127.0.0.1 (issue 18, item 9): `accelerate launch --num_machines 2 --machine_rank {0,1}
--main_process_ip 127.0.0.1`, one CPU process each, train in lockstep into one shared output folder; only the
global main process holds the lock and writes the run files."""
import json
import subprocess
import sys

import pytest
import torch

from data import write_synthetic_shards
from test_train_distributed import free_port
from train_utils import REPO, subprocess_env, tiny_config, write_yaml


@pytest.mark.slow
def test_two_machines_on_localhost_train_in_lockstep(tmp_path):
    shards = write_synthetic_shards(str(tmp_path / "shards"), num_train=32, num_val=4, resolution=16, seed=0)
    out = tmp_path / "out"
    cfg = write_yaml(tiny_config(shards, out, training={"max_train_steps": 3},
                                 experiment={"save_every": 3, "eval_every": 100, "generate_every": 100}),
                     tmp_path / "cfg.yaml")
    port = free_port()
    env = dict(subprocess_env(), ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1")

    def launch(rank):
        command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "2",
                   "--machine_rank", str(rank), "--num_processes", "2", "--main_process_ip", "127.0.0.1",
                   "--main_process_port", str(port), "--mixed_precision", "no", "--dynamo_backend", "no",
                   str(REPO / "tests" / "helpers" / "train_and_dump_ranks.py"), f"config={cfg}"]
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    machines = [launch(0), launch(1)]
    outputs = [m.communicate(timeout=400) for m in machines]
    for machine, (_, stderr) in zip(machines, outputs):
        assert machine.returncode == 0, stderr[-4000:]
    rank0 = torch.load(out / "rank0.pt", weights_only=True)
    rank1 = torch.load(out / "rank1.pt", weights_only=True)
    assert [k for k in rank0 if not torch.equal(rank0[k], rank1[k])] == []
    assert "2 process(es)" in (out / "logs" / "log.txt").read_text()
    assert (out / "checkpoint-3" / "random_states_1.pt").is_file()
    record = json.loads((out / "run.json").read_text())
    assert [e["event"] for e in record["history"]] == ["started"]  # written once, by the global main process
    assert not (out / ".run.lock").exists()  # released at the end
