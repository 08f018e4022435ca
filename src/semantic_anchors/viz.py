"""Plots: feature embeddings, anchor / centre similarity, per-class bars, training curves.

Matplotlib is used through its Agg canvas directly (no ``pyplot``, no global backend switch), so
the functions work on headless machines and inside notebooks alike. UMAP comes from the optional
``umap-learn``; without it the embedding falls back to PCA (``torch.pca_lowrank``) and the plot's
title says so. Every function writes one PNG and returns its path.

Install the extra with ``pip install semantic-anchors[viz]``.
"""

from __future__ import annotations

import csv
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from semantic_anchors._plotting import (
    as_tensor,
    class_colors,
    grid,
    legend_line,
    legend_marker,
    new_figure,
    panels_of,
    save_figure,
)

__all__ = [
    "embed_2d",
    "load_training_log",
    "plot_feature_embedding",
    "plot_per_class_bars",
    "plot_similarity_heatmap",
    "plot_training_curves",
]

GROUP_COLORS = {"head": "#4c72b0", "body": "#dd8452", "tail": "#c44e52"}


def embed_2d(features: torch.Tensor, method: str = "auto", seed: int = 0) -> tuple[np.ndarray, str]:
    """2-D coordinates of ``(N, D)`` features and the method used (``"UMAP"`` or ``"PCA"``).

    ``method``: ``"auto"`` (UMAP when umap-learn is installed, else PCA), ``"umap"`` or ``"pca"``.

    Raises:
        ValueError: an unknown ``method`` or features that are not ``(N, D)``.
        ModuleNotFoundError: ``method="umap"`` without umap-learn.
    """
    if method not in ("auto", "umap", "pca"):
        raise ValueError(f"method: expected 'auto', 'umap' or 'pca', received {method!r}")
    x = as_tensor(features, "features", 2).double()  # (N, D)
    if method in ("auto", "umap") and len(x) > 16:
        try:
            import umap
        except ModuleNotFoundError:
            if method == "umap":
                raise
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # n_jobs / random_state notices
                reducer = umap.UMAP(n_components=2, n_neighbors=15, min_dist=0.1, random_state=seed)
                return np.asarray(reducer.fit_transform(x.numpy())), "UMAP"
    centered = x - x.mean(0)  # (N, D)
    if min(centered.shape) < 2:
        return np.pad(centered.numpy()[:, :2], ((0, 0), (0, max(0, 2 - x.shape[1])))), "PCA"
    _, _, v = torch.pca_lowrank(centered, q=2, center=False)  # v: (D, 2)
    return (centered @ v).numpy(), "PCA"  # (N, 2)


def plot_feature_embedding(
    features: torch.Tensor | Mapping[str, torch.Tensor],
    labels: torch.Tensor | Mapping[str, torch.Tensor],
    out: str | Path,
    *,
    class_names: Sequence[str] | None = None,
    method: str = "auto",
    title: str | None = None,
    seed: int = 0,
) -> Path:
    """Scatter of sampled features in 2-D (UMAP, or PCA), one colour per class.

    Args:
        features: ``(N, D)`` vectors, or ``{panel title: (N, D)}`` for side-by-side panels
            (e.g. one per method; each panel is embedded on its own).
        labels: ``(N,)`` class indices, or a mapping with the same keys as ``features``.
        out: PNG path.
        class_names: legend names (default ``class 0`` ...).
        method: ``"auto"``, ``"umap"`` or ``"pca"`` (see :func:`embed_2d`).
        title: figure title; the embedding method is appended.

    Raises:
        ValueError: mismatched keys or lengths, or a bad ``method``.
    """
    feats, labs = panels_of(features, "features"), panels_of(labels, "labels")
    if feats.keys() != labs.keys():
        raise ValueError(f"labels: expected the keys {list(feats)}, received {list(labs)}")
    num_classes = max(
        [len(class_names or [])]
        + [int(as_tensor(v, "labels", 1).max()) + 1 for v in labs.values() if len(v)]
    )
    names = (
        list(class_names) if class_names is not None else [f"class {c}" for c in range(num_classes)]
    )
    colors = class_colors(num_classes)
    rows, cols = grid(len(feats))
    fig = new_figure(4.2 * cols + 1.8, 4.0 * rows)
    used = set()
    for i, (panel, x) in enumerate(feats.items()):
        x, y = as_tensor(x, "features", 2), as_tensor(labs[panel], "labels", 1).long()
        if len(x) != len(y):
            raise ValueError(
                f"labels: expected {len(x)} labels for panel {panel!r}, received {len(y)}"
            )
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.set_xticks([])
        ax.set_yticks([])
        if len(x) < 3:
            ax.text(0.5, 0.5, "too few samples", ha="center", va="center", transform=ax.transAxes)
            ax.set_title(panel)
            continue
        coords, used_method = embed_2d(x, method, seed)
        used.add(used_method)
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed)).numpy()
        point_colors = np.array([colors[c] for c in y.tolist()])
        ax.scatter(
            coords[order, 0], coords[order, 1], c=point_colors[order], s=7, alpha=0.75, linewidths=0
        )
        ax.set_title(panel, fontsize=11)
    handles = [
        legend_marker(colors[c], names[c] if c < len(names) else f"class {c}")
        for c in range(num_classes)
    ]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False,
               fontsize=9, title="class")  # fmt: skip
    how = " / ".join(sorted(used)) or method.upper()
    if "PCA" in used and method == "auto":
        how = "PCA (umap-learn not installed)"
    fig.suptitle(f"{title + ': ' if title else ''}features by class, {how}", fontsize=12)
    fig.tight_layout()
    return save_figure(fig, out)


def plot_similarity_heatmap(
    vectors: torch.Tensor | Mapping[str, torch.Tensor],
    out: str | Path,
    *,
    class_names: Sequence[str] | None = None,
    center: bool = False,
    title: str | None = None,
) -> Path:
    """Cosine-similarity matrices of class vectors (anchors, semantic anchors, class centres).

    Args:
        vectors: ``(C, D)``, or ``{panel title: (C, D)}`` for side-by-side panels. NaN rows (a
            class never seen / an anchor never initialised) are drawn grey.
        out: PNG path.
        class_names: tick labels.
        center: subtract the mean of the (finite) rows first. Class centres of post-ReLU features
            all point the same way (cosines near 1); their differences are what tell the classes
            apart, as in the neural-collapse literature's globally centred class means.
        title: figure title.

    Raises:
        ValueError: a non-2-D input, or panels with different ``C``.
    """
    from semantic_anchors.metrics import cosine_similarity_matrix

    panels = {
        k: as_tensor(v, "vectors", 2).double() for k, v in panels_of(vectors, "vectors").items()
    }
    sizes = {v.shape[0] for v in panels.values()}
    if len(sizes) != 1:
        raise ValueError(
            f"vectors: expected panels with the same number of classes, received {sizes}"
        )
    c = sizes.pop()
    names = list(class_names) if class_names is not None else [str(i) for i in range(c)]
    rows, cols = grid(len(panels))
    side = max(3.4, 0.3 * c + 1.8)
    fig = new_figure(side * cols + 1.2, side * rows + 0.6, layout="constrained")
    image = None
    for i, (panel, v) in enumerate(panels.items()):
        valid = torch.isfinite(v).all(1)  # (C,)
        if center and valid.any():
            v = v - v[valid].mean(0)  # (C, D)
        sim = cosine_similarity_matrix(v)  # (C, C)
        ax = fig.add_subplot(rows, cols, i + 1)
        image = ax.imshow(np.ma.masked_invalid(sim.numpy()), vmin=-1, vmax=1, cmap="RdBu_r",
                          interpolation="nearest")  # fmt: skip
        ax.set_facecolor("#bbbbbb")
        ax.set_xticks(range(c))
        ax.set_xticklabels(names, rotation=90, fontsize=7)
        ax.set_yticks(range(c))
        ax.set_yticklabels(names if i % cols == 0 else [], fontsize=7)
        off = sim.masked_fill(torch.eye(c, dtype=torch.bool), float("nan"))
        off = torch.where(torch.isfinite(off), off, torch.full_like(off, -math.inf))
        if valid.sum() >= 2:
            a, b = divmod(int(off.argmax()), c)
            detail = f"closest: {names[a]} / {names[b]} ({float(off[a, b]):.2f})"
        else:
            detail = "no valid rows (all NaN)" if not valid.any() else "one valid row"
        ax.set_title(f"{panel}\n{detail}" if panel else detail, fontsize=9)
    fig.colorbar(image, ax=fig.axes, shrink=0.6, label="cosine similarity")
    note = "cosine similarity, globally centred" if center else "cosine similarity"
    fig.suptitle(f"{title}\n({note})" if title else note, fontsize=11)
    return save_figure(fig, out)


def plot_per_class_bars(
    values: Mapping[str, Sequence[float]],
    out: str | Path,
    *,
    class_names: Sequence[str],
    class_frequencies: Sequence[float],
    errors: Mapping[str, Sequence[float]] | None = None,
    metric: str = "IoU",
    groups: Mapping[str, Sequence[int]] | None = None,
    title: str | None = None,
) -> Path:
    """Per-class scores of several methods, classes sorted by training frequency (most first).

    The upper panel shows each class's share of the training data (log scale, coloured by
    head / body / tail when ``groups`` is given); the lower one the grouped bars with optional
    error bars (e.g. the std over seeds).

    Args:
        values: ``{method: (C,) scores}`` (percentages; None / NaN = not measured).
        out: PNG path.
        class_names: ``C`` names.
        class_frequencies: ``C`` training frequencies (counts or fractions).
        errors: ``{method: (C,)}`` half-heights of the error bars.
        metric: y-axis label, e.g. ``"IoU"`` or ``"accuracy"``.
        groups: ``{"head": [...], "body": [...], "tail": [...]}`` class indices.
        title: figure title.

    Raises:
        ValueError: lengths that differ from ``len(class_names)``.
    """
    c = len(class_names)
    for name, seq in [
        ("class_frequencies", class_frequencies),
        *values.items(),
        *(errors or {}).items(),
    ]:
        if len(seq) != c:
            raise ValueError(f"{name}: expected {c} entries (one per class), received {len(seq)}")
    freq = np.asarray(class_frequencies, dtype=float)
    share = 100.0 * freq / freq.sum() if freq.sum() > 0 else freq
    order = np.argsort(-freq, kind="stable")
    group_of = {int(i): g for g, members in (groups or {}).items() for i in members}
    fig = new_figure(max(7.0, 0.55 * c * max(1, len(values)) ** 0.5 + 3), 6.0)
    grid = fig.add_gridspec(2, 1, height_ratios=[1, 3], hspace=0.08)
    top, ax = fig.add_subplot(grid[0]), fig.add_subplot(grid[1])
    x = np.arange(c)
    top.bar(
        x,
        share[order],
        color=[GROUP_COLORS.get(group_of.get(int(i), ""), "#888888") for i in order],
    )
    top.set_yscale("log")
    top.set_ylabel("train share (%)", fontsize=9)
    top.set_xticks([])
    top.set_xlim(-0.6, c - 0.4)
    width = 0.8 / max(1, len(values))
    colors = class_colors(len(values))
    for j, (method, scores) in enumerate(values.items()):
        y = np.array([np.nan if s is None else float(s) for s in scores])[order]
        err = None
        if errors and method in errors:
            err = np.array([np.nan if e is None else float(e) for e in errors[method]])[order]
            err = np.nan_to_num(err)
        ax.bar(x - 0.4 + width * (j + 0.5), np.nan_to_num(y), width, yerr=err, label=method,
               color=colors[j], capsize=2 if err is not None else 0, error_kw={"linewidth": 0.8})  # fmt: skip
    ax.set_xticks(x)
    ax.set_xticklabels([class_names[i] for i in order], rotation=45, ha="right", fontsize=8)
    ax.set_xlim(-0.6, c - 0.4)
    ax.set_ylabel(f"{metric} (%)")
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.005, 1.0), frameon=False)
    if groups:
        sorted_groups = [group_of.get(int(i), "") for i in order]
        for k in range(1, c):
            if sorted_groups[k] != sorted_groups[k - 1]:
                for axis in (top, ax):
                    axis.axvline(k - 0.5, color="k", linestyle="--", linewidth=0.8, alpha=0.6)
        for g in dict.fromkeys(sorted_groups):
            idx = [k for k, s in enumerate(sorted_groups) if s == g]
            top.text(np.mean(idx), 1.02, g, transform=top.get_xaxis_transform(), ha="center",
                     va="bottom", fontsize=9, color=GROUP_COLORS.get(g, "k"))  # fmt: skip
    fig.suptitle(
        (title + "\n" if title else "")
        + f"per-class {metric}, classes sorted by training frequency (most frequent left)",
        fontsize=11,
    )
    return save_figure(fig, out)


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
