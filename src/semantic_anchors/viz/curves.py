"""Training curves from a run's ``logs/*/metrics.csv`` (resumed parts included), EMA-smoothed."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from semantic_anchors.viz._plotting import class_colors, grid, legend_line, new_figure, save_figure

__all__ = ["load_training_log", "plot_training_curves"]


def load_training_log(run_dir: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{column: (steps, values)}`` from every ``logs/*/metrics.csv`` of a run (resumed parts
    included), sorted by step; a step logged twice keeps its last value."""
    run_dir = Path(run_dir)
    files = sorted((run_dir / "logs").glob("*/metrics.csv"), key=lambda p: p.stat().st_mtime)
    if not files and run_dir.suffix == ".csv":
        files = [run_dir]
    columns: dict[str, dict[int, float]] = {}
    for file in files:
        with open(file, newline="") as fh:
            for row in csv.DictReader(fh):
                try:
                    step = int(float(row.get("step") or "nan"))
                except ValueError:
                    continue
                for key, raw in row.items():
                    if key in ("step", "epoch") or raw in (None, ""):
                        continue
                    try:
                        columns.setdefault(key, {})[step] = float(raw)
                    except ValueError:
                        continue
    out = {}
    for key, points in columns.items():
        steps = np.array(sorted(points))
        out[key] = (steps, np.array([points[s] for s in steps]))
    return out


def _smooth(values: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's debiased exponential moving average."""
    if weight <= 0 or len(values) == 0:
        return values
    out, last, norm = np.empty_like(values), 0.0, 0.0
    for i, v in enumerate(values):
        last, norm = weight * last + (1 - weight) * v, weight * norm + (1 - weight)
        out[i] = last / norm
    return out


def plot_training_curves(
    runs: str | Path | Sequence[str | Path] | Mapping[str, str | Path | Sequence[str | Path]],
    out: str | Path,
    *,
    columns: Sequence[str] | None = None,
    smoothing: float = 0.6,
    title: str | None = None,
) -> Path:
    """Training curves read from ``logs/*/metrics.csv``: one panel per column, one colour per run
    label (several runs under one label, e.g. seeds, share its colour).

    Args:
        runs: a run folder, a list of them, or ``{label: run folder or list of run folders}``.
        out: PNG path.
        columns: CSV columns to draw (default: ``train/loss`` and every ``reg/*`` column found,
            e.g. SAR's ``reg/gate_open``, ``reg/min_anchor_prob``).
        smoothing: EMA weight in [0, 1) (TensorBoard's debiased smoothing; 0 = raw).
        title: figure title.

    Raises:
        ValueError: ``smoothing`` outside [0, 1).
    """
    if not 0 <= smoothing < 1:
        raise ValueError(f"smoothing: expected a value in [0, 1), received {smoothing}")
    if isinstance(runs, (str, Path)):
        runs = [runs]
    if not isinstance(runs, Mapping):
        runs = {Path(r).name: r for r in runs}
    logs = {
        label: [
            load_training_log(r) for r in ([paths] if isinstance(paths, (str, Path)) else paths)
        ]
        for label, paths in runs.items()
    }
    found = {key for per_label in logs.values() for log in per_label for key in log}
    if columns is None:
        columns = [k for k in ("train/loss", "train/loss_main") if k in found] + sorted(
            k for k in found if k.startswith("reg/")
        )
    columns = [k for k in columns if k in found]
    rows, cols = grid(max(1, len(columns)))
    fig = new_figure(4.4 * cols, 3.0 * rows + 0.8, layout="constrained")
    colors = dict(zip(logs, class_colors(len(logs)), strict=True))
    if not columns:
        ax = fig.add_subplot(1, 1, 1)
        ax.axis("off")
        ax.text(0.5, 0.5, "no training values logged (runs shorter than trainer.log_every?)",
                ha="center", va="center")  # fmt: skip
    for i, column in enumerate(columns):
        ax = fig.add_subplot(rows, cols, i + 1)
        for label, per_label in logs.items():
            first = True
            for log in per_label:
                if column not in log:
                    continue
                steps, values = log[column]
                ax.plot(steps, _smooth(values, smoothing), color=colors[label], linewidth=1.2,
                        alpha=0.85, label=label if first else None)  # fmt: skip
                first = False
        ax.set_title(column, fontsize=10)
        ax.set_xlabel("step", fontsize=9)
        if column.endswith(("gate_open", "_prob")):  # rates: show the whole [0, 1]
            ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
    handles = [legend_line(colors[label], label) for label in logs]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(6, len(handles)),
               frameon=False, fontsize=9)  # fmt: skip
    smooth_note = f"EMA-smoothed ({smoothing})" if smoothing > 0 else "raw"
    fig.suptitle(f"{title + ': ' if title else ''}training curves, {smooth_note}", fontsize=12)
    return save_figure(fig, out)
