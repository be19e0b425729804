"""Training checkpoints: atomic `checkpoint-<step>` folders, newest-complete lookup, pruning, exact restore.

Folder layout (names in `utils.run_layout`; every file loads with `torch.load(weights_only=True)`; model
keys never carry a DDP `module.` prefix, so a checkpoint resumes under any process count):

    checkpoint-<step>/
        unwrapped_model/pytorch_model.bin   main model weights (plain state dict)
        ema_model/pytorch_model.bin         EMA weights (plain state dict; absent without EMA)
        training_state.pt                   other models, optimizers, LR schedulers, loss buffers, grad scaler
        random_states_<rank>.pt             python / numpy / torch / CUDA RNG states of each process
        metadata.json                       {"global_step": <step>}, written last

The folder is assembled as `.checkpoint-<step>.partial` and renamed when complete, so a crash while saving
never leaves a folder that looks like a checkpoint; stale partial folders are removed by the next save.
"""
from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
import torch

from modeling.checkpoint import CheckpointNotFoundError
from utils.atomic import atomic_torch_save, atomic_write_json, fsync_path
from utils.run_layout import (CHECKPOINT_PATTERN, EMA_FILE, METADATA_FILE, MODEL_FILE, STATE_FILE,
                                     checkpoint_name, rng_state_file)



def is_complete_checkpoint(path: Path) -> bool:
    return (Path(path) / METADATA_FILE).is_file() and (Path(path) / MODEL_FILE).is_file()


def list_checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoint folders in `output_dir` as (step, path), oldest first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = []
    for path in output_dir.iterdir():
        match = CHECKPOINT_PATTERN.match(path.name)
        if match and path.is_dir() and is_complete_checkpoint(path):
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(output_dir: Path) -> Optional[Path]:
    checkpoints = list_checkpoints(output_dir)
    return checkpoints[-1][1] if checkpoints else None


def read_global_step(path: Path) -> int:
    with open(Path(path) / METADATA_FILE) as f:
        return int(json.load(f)["global_step"])


def rng_state() -> dict[str, Any]:
    """This process's RNG states in a weights-only-loadable form."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss)}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _load(path: Path) -> Any:
    return torch.load(path, map_location="cpu", weights_only=True)


class CheckpointManager:
    """Saves and restores training state under `output_dir`; call `save`/`load` on every process."""

    def __init__(self, output_dir: Path, accelerator, keep_last: int = 2):
        self.output_dir = Path(output_dir)
        self.accelerator = accelerator
        self.keep_last = keep_last

    def save(self, step: int, model_state: Mapping[str, torch.Tensor], training_state: Mapping[str, Any],
             ema_state: Optional[Mapping[str, torch.Tensor]] = None) -> Path:
        """Write `checkpoint-<step>` atomically (a no-op when it already exists) and prune old ones."""
        acc = self.accelerator
        final = self.output_dir / checkpoint_name(step)
        partial = self.output_dir / f".{checkpoint_name(step)}.partial"
        if final.exists():
            return final
        if acc.is_main_process:
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
        acc.wait_for_everyone()
        atomic_torch_save(rng_state(), partial / rng_state_file(acc.process_index))
        if acc.is_main_process:
            atomic_torch_save(dict(model_state), partial / MODEL_FILE)
            if ema_state is not None:
                atomic_torch_save(dict(ema_state), partial / EMA_FILE)
            atomic_torch_save(dict(training_state), partial / STATE_FILE)
            atomic_write_json(partial / METADATA_FILE, {"global_step": step})
            for sub in {(partial / MODEL_FILE).parent, (partial / EMA_FILE).parent, partial}:
                if sub.is_dir():
                    fsync_path(sub)
        acc.wait_for_everyone()
        if acc.is_main_process:
            os.replace(partial, final)
            fsync_path(self.output_dir)
            self._prune()
        acc.wait_for_everyone()
        return final

    def _prune(self) -> None:
        for entry in self.output_dir.glob(".checkpoint-*.partial"):
            shutil.rmtree(entry, ignore_errors=True)
        if self.keep_last > 0:
            for _, path in list_checkpoints(self.output_dir)[:-self.keep_last]:
                shutil.rmtree(path, ignore_errors=True)

    def load(self, path: Path) -> dict[str, Any]:
        """Read a checkpoint folder: {"global_step", "model", "ema" (or None), "training_state"}; also restores
        this process's RNG states when the folder has them."""
        path = Path(path)
        if not is_complete_checkpoint(path):
            raise CheckpointNotFoundError(f"'{path}' is not a complete training checkpoint (expected {METADATA_FILE} "
                                          f"and {MODEL_FILE} in a checkpoint-<step> folder written by this trainer).")
        rng_file = path / rng_state_file(self.accelerator.process_index)
        if rng_file.is_file():
            set_rng_state(_load(rng_file))
        return {
            "global_step": read_global_step(path),
            "model": _load(path / MODEL_FILE),
            "ema": _load(path / EMA_FILE) if (path / EMA_FILE).is_file() else None,
            "training_state": _load(path / STATE_FILE),
        }
