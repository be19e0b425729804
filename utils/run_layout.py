"""Where a run writes, and the names of what it writes: the one place they are spelled.

    <output_dir>/                              experiment.output_dir, else $WORKSPACE/outputs/<experiment.name>
        config.yaml                            the merged config of the run (written once the run has started)
        run.json                               run id, config hash, code version, created / resumed, changes
        .run.lock                              pid and host of the process writing here (training.run_lock)
        metrics.jsonl                          one {"step": ..., scalars} record per log step
        pytorch_model.bin, model.safetensors   final (EMA) weights of the main model, plain state dict
        checkpoint-<step>/
            unwrapped_model/pytorch_model.bin  main model weights
            ema_model/pytorch_model.bin        EMA weights (absent without EMA)
            training_state.pt                  other models, optimizers, LR schedulers, loss buffers, grad scaler
            random_states_<rank>.pt            RNG states of each process
            metadata.json                      {"global_step": <step>}, written last

The trainer writes this layout (`training.checkpoint`); `modeling.load_pretrained` reads weights from any level of
it; evaluation scripts write to `<output_dir>/eval` unless `experiment.output_dir` is set.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

CONFIG_FILE = "config.yaml"
RUN_FILE = "run.json"  # run id, defining-config hash, code version, start/resume history (training.run_identity)
CORRUPT_PREFIX = "corrupt-"  # a checkpoint that failed to load is moved to corrupt-checkpoint-<step>
METRICS_FILE = "metrics.jsonl"

WEIGHTS_BIN = "pytorch_model.bin"
WEIGHTS_SAFETENSORS = "model.safetensors"
WEIGHT_FILES = (WEIGHTS_SAFETENSORS, WEIGHTS_BIN)  # in a weights folder, in order of preference

CHECKPOINT_PREFIX = "checkpoint-"
CHECKPOINT_PATTERN = re.compile(rf"^{CHECKPOINT_PREFIX}(\d+)$")
MODEL_SUBFOLDER = "unwrapped_model"
EMA_SUBFOLDER = "ema_model"
TRAINING_SUBFOLDERS = (EMA_SUBFOLDER, MODEL_SUBFOLDER)  # inside checkpoint-<step>/, in order of preference
MODEL_FILE = f"{MODEL_SUBFOLDER}/{WEIGHTS_BIN}"
EMA_FILE = f"{EMA_SUBFOLDER}/{WEIGHTS_BIN}"
STATE_FILE = "training_state.pt"
METADATA_FILE = "metadata.json"


def checkpoint_name(step: int) -> str:
    return f"{CHECKPOINT_PREFIX}{step}"


def rng_state_file(rank: int) -> str:
    return f"random_states_{rank}.pt"


def resolve_output_dir(config, subdir: str = "") -> Path:
    """`experiment.output_dir` if set, else `$WORKSPACE/outputs/<experiment.name>[/<subdir>]` (WORKSPACE: ./runs)."""
    if config.experiment.output_dir:
        return Path(config.experiment.output_dir)
    path = Path(os.environ.get("WORKSPACE", "./runs")) / "outputs" / config.experiment.name
    return path / subdir if subdir else path


def read_metrics(path) -> list[dict]:
    """The records of a metrics.jsonl file (a run's folder or the file itself). A last line cut short by a killed
    run is left out (every other line must parse)."""
    path = Path(path)
    with open(path / METRICS_FILE if path.is_dir() else path) as f:
        lines = [line for line in f if line.strip()]
    records = [json.loads(line) for line in lines[:-1]]
    if lines:
        try:
            records.append(json.loads(lines[-1]))
        except ValueError:
            if lines[-1].endswith("\n"):  # a complete but invalid line is an error, not a cut
                raise
    return records
