"""Loss-curve plots from a trainer's `metrics.jsonl` (no tensorboard needed)."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from utils.atomic import atomic_path
from utils.run_layout import read_metrics


def last_value_per_step(records: Sequence[dict], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of `key`, keeping the last record of a step (a resumed run re-logs a few steps)."""
    by_step = {r["step"]: r[key] for r in records if key in r}
    steps = sorted(by_step)
    return steps, [by_step[s] for s in steps]


def plot_loss_curves(panels: Mapping[str, tuple[Path, Sequence[str]]], path: Path) -> None:
    """One panel per run: {title: (metrics.jsonl path, keys to plot)} -> PNG at `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, (title, (metrics_path, keys)) in zip(axes[0], panels.items()):
        records = read_metrics(metrics_path)
        if not any(key in r for r in records for key in keys):
            raise KeyError(f"none of {list(keys)} in {metrics_path}; it has {sorted(records[0]) if records else []}")
        for key in keys:
            steps, values = last_value_per_step(records, key)
            if steps:
                ax.plot(steps, values, label=key)
        ax.set_title(title)
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
