"""Scalar logging: window means of loss terms, the tracker (tensorboard / wandb), and `metrics.jsonl`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import torch

from utils.run_layout import METRICS_FILE


class WindowMeans:
    """Sums scalar tensors over a logging window on their device (no host sync per step)."""

    def __init__(self):
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, scalars: Mapping[str, torch.Tensor]) -> None:
        for key, value in scalars.items():
            value = value.detach().float()
            self.sums[key] = self.sums[key] + value if key in self.sums else value.clone()
            self.counts[key] = self.counts.get(key, 0) + 1

    def pop(self, accelerator=None) -> dict[str, float]:
        """Means over the window (and over processes when `accelerator` is given); resets the window."""
        if not self.sums:
            return {}
        keys = sorted(self.sums)
        means = torch.stack([self.sums[k] / self.counts[k] for k in keys])
        if accelerator is not None and accelerator.num_processes > 1:
            means = accelerator.reduce(means, reduction="mean")
        self.sums, self.counts = {}, {}
        return dict(zip(keys, means.tolist()))


class MetricsLogger:
    """Writes scalars to the accelerate trackers and appends `{"step": ..., **scalars}` lines to metrics.jsonl.

    Call on every process; only the main process writes.
    """

    def __init__(self, accelerator, output_dir: Path):
        self.accelerator = accelerator
        self.path = Path(output_dir) / METRICS_FILE
        if accelerator.is_main_process:
            self._drop_partial_last_line()

    def _drop_partial_last_line(self) -> None:
        """A run killed while appending can leave a last line without its newline: cut it before appending."""
        if not self.path.is_file():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            with self.path.open("r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)

    def log(self, step: int, scalars: Mapping[str, float]) -> None:
        self.accelerator.log(dict(scalars), step=step)
        if self.accelerator.is_main_process:
            with self.path.open("a") as f:
                f.write(json.dumps({"step": step, **scalars}) + "\n")
