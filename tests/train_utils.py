"""Shared helpers of the tests/test_train_*.py end-to-end tests: tiny configs and synthetic shards."""
import copy
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]


def load_script(name: str):
    """scripts/<name>.py as a module (scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(f"{name}_script", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TINY = {
    "experiment": {"name": "tiny", "save_every": 3, "eval_every": 6, "generate_every": 3, "log_every": 2,
                   "keep_last": 0},
    "model": {"vq_model": {"token_size": 10, "hidden_channels": 32, "channel_mult": [1, 2], "num_resolutions": 2,
                           "num_res_blocks": 1},
              "discriminator": {"hidden_channels": 32, "num_stages": 2}},
    "losses": {"perceptual_loss": "none", "discriminator_start": 3},
    "dataset": {"params": {"num_workers_per_gpu": 0, "shuffle_buffer_size": 16},
                "preprocessing": {"resolution": 16}},
    "optimizer": {"params": {"learning_rate": 1e-3, "discriminator_learning_rate": 1e-3}},
    "lr_scheduler": {"params": {"warmup_steps": 2}},
    "training": {"per_gpu_batch_size": 4, "max_train_steps": 6, "num_generated_images": 2},
    "evaluation": {"compute_inception": False, "compute_lpips": False},
}


def tiny_config(shards: dict, output_dir, **sections) -> dict:
    """TINY with the shard patterns, the output dir and per-section overrides ({"training": {...}})."""
    cfg = copy.deepcopy(TINY)
    cfg["experiment"]["output_dir"] = str(output_dir)
    cfg["dataset"]["params"]["train_shards_path_or_url"] = shards["train"]
    cfg["dataset"]["params"]["eval_shards_path_or_url"] = shards["val"]
    for section, values in sections.items():
        cfg[section].update(values)
    return cfg


def write_yaml(cfg: dict, path) -> str:
    OmegaConf.save(OmegaConf.create(cfg), path)
    return str(path)


def subprocess_env() -> dict:
    """Environment for child trainers: same thread count as this process (bitwise comparable CPU kernels)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()), MASKBIT_OFFLINE="1",
               WANDB_MODE="offline")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def run_script(args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "scripts" / "train_tokenizer.py"), *args], cwd=REPO,
                          env=subprocess_env(), capture_output=True, text=True, **kwargs)


def assert_bitwise_equal(a, b, where=""):
    """Nested dicts/lists of tensors and numbers are exactly equal."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_bitwise_equal(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_bitwise_equal(x, y, f"{where}[{i}]")
    elif torch.is_tensor(a):
        assert torch.equal(a, b), where
    else:
        assert a == b, where


def kill_after_checkpoint_and_resume(config_path, output_dir, step: int, final_step: int,
                                     script: str = "train_tokenizer.py") -> None:
    """Run scripts/<script> on `config_path`, SIGKILL it once `checkpoint-<step>` is complete, then run the same
    command again to the end (it must resume from that checkpoint)."""
    command = [sys.executable, str(REPO / "scripts" / script), f"config={config_path}"]
    process = subprocess.Popen(command, cwd=REPO, env=subprocess_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while not (output_dir / f"checkpoint-{step}" / "metadata.json").exists():
        assert process.poll() is None, process.stderr.read().decode()[-3000:]
        assert time.time() < deadline, "no checkpoint written in time"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    process.stderr.close()
    if (output_dir / f"checkpoint-{final_step}").exists():
        pytest.fail("the run finished before it could be killed; the test did not exercise resuming")
    resumed = subprocess.run(command, cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Resumed from {output_dir / f'checkpoint-{step}'} at step {step}" in resumed.stdout
