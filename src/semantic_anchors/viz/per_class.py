"""Per-class values as bars: classes sorted by training frequency, coloured head / body / tail."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from semantic_anchors.viz._plotting import class_colors, new_figure, save_figure

__all__ = ["GROUP_COLORS", "plot_per_class_bars"]

GROUP_COLORS = {"head": "#4c72b0", "body": "#dd8452", "tail": "#c44e52"}


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
