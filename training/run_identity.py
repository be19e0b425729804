"""What run a folder holds, and whether this config may continue it: `<output_dir>/run.json`.

    plan = plan_run(output_dir, config)     # reads only; raises before anything is written
    plan.apply()                            # experiment.overwrite: moves the old run aside (main process)
    ...                                     # build, resume
    record_start(output_dir, config, plan, step)   # writes config.yaml and run.json once the run has started

run.json: {"run_id", "config_hash" (sha256 of the defining keys), "defining_config", "code_version", "created",
"last_resumed", "history": [{"event": "started"|"resumed", "at", "step", "code_version", "changes"}]}.

Keys are of three kinds:
  defining    the model, the data and the tokenizer (DEFINING_KEYS, less the loss weights and sampling settings in
              CHANGEABLE_MODEL_KEYS): a checkpoint means nothing under other values, so resuming with a change
              stops with the differing keys listed;
  ignored     how this launch is run (IGNORED_KEYS): never compared;
  the rest    hyper-parameters and cadences (lr, steps, batch, logging...): a resume may change them; each change is
              recorded in run.json and logged.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import OmegaConf

from training.checkpoint import list_checkpoints
from training.run_lock import LOCK_FILE
from utils.atomic import atomic_write_json
from utils.config import save_config, to_plain
from utils.errors import MaskbitError
from utils.run_layout import CHECKPOINT_PREFIX, CONFIG_FILE, RUN_FILE, WEIGHTS_BIN

DEFINING_KEYS = ("model.", "dataset.preprocessing.", "dataset.params.source", "dataset.params.train_shards_path_or_url",
                 "dataset.params.pretokenized_shards_path_or_url", "experiment.vqgan_checkpoint", "training.use_ema")
# under `model.` but not architecture: loss weights, regularisation and sampling settings may change on resume
CHANGEABLE_MODEL_KEYS = tuple(
    [f"model.vq_model.{k}" for k in ("commitment_cost", "entropy_loss_weight", "entropy_loss_temperature",
                                     "entropy_gamma", "distributed_entropy")]
    + [f"model.mlm_model.{k}" for k in ("dropout", "class_label_dropout", "train_mask_schedule_strategy",
                                        "min_masking_ratio", "num_steps", "gen_mask_schedule_strategy",
                                        "softmax_temperature", "randomize_temperature", "guidance_scale",
                                        "guidance_annealing", "scale_pow", "use_sampling_annealing")]
    + [f"model.generator.{k}" for k in ("dropout", "attn_drop", "class_label_dropout", "num_steps",
                                        "randomize_temperature", "guidance_scale", "guidance_decay",
                                        "guidance_scale_pow", "softmax_temperature_annealing")])
IGNORED_KEYS = ("config", "print_config", "experiment.resume", "experiment.overwrite", "experiment.output_dir",
                "experiment.resume_optimizer_hparams")
REPO = Path(__file__).resolve().parents[1]


class RunMismatchError(MaskbitError):
    """The output folder holds another run (different defining config), or a run that this launch would clobber."""


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


def _is(key: str, kinds: tuple[str, ...]) -> bool:
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in kinds)


def _defining(key: str) -> bool:
    return _is(key, DEFINING_KEYS) and key not in CHANGEABLE_MODEL_KEYS


def defining_config(config) -> dict[str, Any]:
    return {k: v for k, v in sorted(flatten(to_plain(config)).items()) if _defining(k)}


def config_hash(defining: dict) -> str:
    return hashlib.sha256(json.dumps(defining, sort_keys=True, default=str).encode()).hexdigest()[:16]


def code_version() -> str:
    """`git describe`-like id of the code (commit, '+dirty' when modified), 'unknown' outside a git checkout."""
    try:
        run = lambda *args: subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,  # noqa
                                           timeout=10)
        head = run("rev-parse", "--short=12", "HEAD")
        if head.returncode != 0:
            return "unknown"
        dirty = run("status", "--porcelain", "--untracked-files=no").stdout.strip()
        return head.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def holds_a_run(output_dir: Path) -> bool:
    """True when the folder has checkpoint folders or exported weights (a run someone may still want)."""
    if not output_dir.is_dir():
        return False
    return (output_dir / WEIGHTS_BIN).exists() or any(
        p.name.startswith(CHECKPOINT_PREFIX) and p.is_dir() for p in output_dir.iterdir())


def _read_json(path: Path) -> Optional[dict]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _previous_config(output_dir: Path) -> Optional[dict]:
    path = output_dir / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        return flatten(OmegaConf.to_container(OmegaConf.load(path), resolve=True))
    except Exception:  # a hand-edited, unparsable config.yaml: nothing to compare against
        return None


@dataclass
class RunPlan:
    output_dir: Path
    mode: str  # "new" | "resume" | "overwrite"
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # key -> (before, now), resume only
    moved_to: Optional[Path] = None

    def apply(self) -> None:
        """Main process only: for `overwrite`, move everything of the old run (not the lock) to a sibling folder."""
        if self.mode != "overwrite":
            return
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = self.output_dir.with_name(f"{self.output_dir.name}.replaced-{stamp}")
        n = 1
        while target.exists():
            n += 1
            target = self.output_dir.with_name(f"{self.output_dir.name}.replaced-{stamp}-{n}")
        target.mkdir(parents=True)
        for entry in self.output_dir.iterdir():
            if entry.name != LOCK_FILE:
                shutil.move(str(entry), str(target / entry.name))
        self.moved_to = target


def plan_run(output_dir: Path, config) -> RunPlan:
    """Decide how this launch uses `output_dir`, reading only; errors name the differing keys and the way out."""
    output_dir = Path(output_dir)
    exp = config.experiment
    if exp.resume_optimizer_hparams not in ("config", "checkpoint"):
        raise RunMismatchError(f"experiment.resume_optimizer_hparams must be 'config' or 'checkpoint', got "
                               f"{exp.resume_optimizer_hparams!r}")
    if not exp.resume:
        if not holds_a_run(output_dir):
            return RunPlan(output_dir, "new")
        if not exp.overwrite:
            raise RunMismatchError(
                f"'{output_dir}' already holds a run (checkpoint folders or exported weights) and "
                f"experiment.resume=false would mix a new run with it. Set experiment.resume=true to continue it, "
                f"experiment.overwrite=true to move it aside (to '{output_dir.name}.replaced-<time>', nothing is "
                f"deleted) and start over, or choose another experiment.output_dir.")
        return RunPlan(output_dir, "overwrite")
    if not list_checkpoints(output_dir):
        return RunPlan(output_dir, "new")

    now = flatten(to_plain(config))
    record = _read_json(output_dir / RUN_FILE) or {}
    before = _previous_config(output_dir) or {}
    before_defining = record.get("defining_config") or {k: v for k, v in before.items() if _defining(k)}
    now_defining = defining_config(config)
    # keys only one side has (a folder without run.json / config.yaml, a key added to the schema since) are not
    # compared: there is nothing to compare against
    differing = sorted(k for k in set(before_defining) & set(now_defining) if before_defining[k] != now_defining[k])
    if differing:
        lines = "; ".join(f"{k}: {before_defining[k]!r} in the run, {now_defining[k]!r} now" for k in differing)
        raise RunMismatchError(
            f"cannot resume the run in '{output_dir}' with this config: it changes what the checkpoints are "
            f"(model, data or tokenizer): {lines}. Nothing was written. Use the run's values, or start a new run in "
            f"another experiment.output_dir (or with experiment.resume=false experiment.overwrite=true, which moves "
            f"the old run aside).")
    changes = {k: (before.get(k), v) for k, v in now.items()
               if k in before and before[k] != v and not _is(k, IGNORED_KEYS) and not _defining(k)}
    return RunPlan(output_dir, "resume", changes)


def record_start(output_dir: Path, config, plan: RunPlan, step: int) -> dict:
    """Main process, once the run has started (built, checkpoint loaded): write config.yaml and run.json."""
    output_dir = Path(output_dir)
    path = output_dir / RUN_FILE
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    version = code_version()
    record = _read_json(path) if plan.mode == "resume" else None
    defining = defining_config(config)
    if not record:
        record = {"run_id": f"{time.strftime('%Y%m%d-%H%M%S')}-{config_hash(defining)[:6]}",
                  "config_hash": config_hash(defining), "defining_config": defining, "code_version": version,
                  "created": stamp, "last_resumed": None, "history": []}
    event = {"event": "resumed" if plan.mode == "resume" else "started", "at": stamp, "step": step,
             "code_version": version}
    if plan.mode == "resume":
        record["last_resumed"] = stamp
        event["changes"] = {k: {"before": a, "now": b} for k, (a, b) in plan.changes.items()}
    if plan.moved_to is not None:
        event["previous_run_moved_to"] = str(plan.moved_to)
    record["history"].append(event)
    save_config(config, output_dir / CONFIG_FILE)
    atomic_write_json(path, record)
    return record
