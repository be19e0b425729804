"""Shared pieces of the Stage-II training tests: a tiny config, a random tokenizer checkpoint, a token folder."""
import copy
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import torch
from accelerate import PartialState

from data.pretokenize import pretokenize
from modeling import build_tokenizer
from training.token_source import load_frozen_tokenizer
from utils.config import to_plain, with_defaults

REPO = Path(__file__).resolve().parents[1]

# 16 px images -> 4x4 grid of 10-bit tokens (2 splits of 5 bits); a 2-layer generator of width 64
TINY_GENERATOR = {
    "experiment": {"name": "gen_tiny", "save_every": 4, "eval_every": 10_000, "generate_every": 4, "log_every": 2,
                   "keep_last": 0},
    "model": {"vq_model": {"token_size": 10, "hidden_channels": 32, "channel_mult": [1, 2, 2], "num_resolutions": 3,
                           "num_res_blocks": 1},
              "mlm_model": {"hidden_dim": 64, "depth": 2, "heads": 2, "mlp_dim": 128, "num_classes": 10,
                            "num_steps": 4, "guidance_scale": 2.0, "randomize_temperature": 1.0}},
    "dataset": {"params": {"num_workers_per_gpu": 0, "shuffle_buffer_size": 16, "pretokenize_num_views": 2},
                "preprocessing": {"resolution": 16, "use_aspect_ratio_aug": False, "interpolation": "bicubic"}},
    "optimizer": {"params": {"learning_rate": 2e-3, "beta2": 0.96, "weight_decay": 0.045}},
    "lr_scheduler": {"params": {"warmup_steps": 2}},
    "training": {"per_gpu_batch_size": 8, "max_train_steps": 8},
    "sample": {"classes": [0, 3], "per_class": 2, "batch_size": 4},
}


def generator_config(output_dir, shards: dict, tokenizer_path, tokens_dir="", **sections) -> dict:
    """TINY_GENERATOR with paths filled in and nested overrides ({"training": {"max_train_steps": 4}})."""
    cfg = copy.deepcopy(TINY_GENERATOR)
    cfg["experiment"].update(output_dir=str(output_dir), vqgan_checkpoint=str(tokenizer_path))
    cfg["dataset"]["params"].update(train_shards_path_or_url=shards["train"], eval_shards_path_or_url=shards["val"],
                                    pretokenized_shards_path_or_url=str(tokens_dir))
    _merge(cfg, sections)
    return cfg


def _merge(base: dict, overrides: dict) -> None:
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def save_random_tokenizer(cfg: dict, path, seed: int = 0) -> Path:
    """A tokenizer of cfg's model.vq_model with seeded random weights, saved as a plain state dict."""
    torch.manual_seed(seed)
    torch.save(build_tokenizer(cfg).state_dict(), path)
    return Path(path)


def make_token_folder(cfg: dict) -> Path:
    """Pretokenize cfg's train shards into cfg's dataset.params.pretokenized_shards_path_or_url (this process)."""
    cfg = with_defaults(cfg)
    state = PartialState(cpu=True)
    meta = {"tokenizer": to_plain(cfg.model.vq_model), "tokenizer_checkpoint": cfg.experiment.vqgan_checkpoint}
    pretokenize(cfg.dataset, load_frozen_tokenizer(cfg, state.device), state, cfg.training.per_gpu_batch_size,
                cfg.training.seed, tokenizer_meta=meta, show_progress=False)
    return Path(cfg.dataset.params.pretokenized_shards_path_or_url)


def subprocess_env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()), MASKBIT_OFFLINE="1",
               WANDB_MODE="offline", ACCELERATE_USE_CPU="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_command(script, args, num_processes: int = 2) -> list:
    """`accelerate launch` of `num_processes` CPU processes (the --multi_gpu launcher with ACCELERATE_USE_CPU=1:
    accelerate 1.x's `--cpu --num_processes 2` starts a single process without mpirun)."""
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(num_processes),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", str(free_port()), str(script), *args]


def start(command) -> subprocess.Popen:
    """Start `command` in its own process group (so that it can be killed with all its workers)."""
    return subprocess.Popen(command, cwd=REPO, env=subprocess_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)


def kill_group(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    process.stderr.close()


def run(command, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=timeout)


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)

