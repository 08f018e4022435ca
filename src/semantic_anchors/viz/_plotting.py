"""Private matplotlib helpers of :mod:`semantic_anchors.viz` (Agg canvas, colours, grids)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

DPI = 120


def new_figure(width: float, height: float, **kwargs):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ModuleNotFoundError as err:  # pragma: no cover - depends on the environment
        raise ModuleNotFoundError(
            "plots need matplotlib: pip install 'semantic-anchors[viz]'"
        ) from err
    fig = Figure(figsize=(width, height), **kwargs)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=DPI, bbox_inches="tight", facecolor="white")
    return out


def class_colors(n: int) -> list:
    from matplotlib import colormaps

    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    if n <= 20:  # the ten dark tab20 colours first, then their light partners
        return [colormaps["tab20"](2 * i if i < 10 else 2 * (i - 10) + 1) for i in range(n)]
    return [colormaps["turbo"](i / max(1, n - 1)) for i in range(n)]


def grid(n: int) -> tuple[int, int]:
    """(rows, cols) for ``n`` panels without a mostly empty last row."""
    cols = n if n <= 3 else 2 if n == 4 else 3 if n in (5, 6, 9) else 4
    return math.ceil(n / cols), cols


def panels_of(value: Any, name: str) -> dict[str, Any]:
    if isinstance(value, Mapping):
        if not value:
            raise ValueError(f"{name}: expected at least one entry, received an empty mapping")
        return dict(value)
    return {"": value}


def as_tensor(value: Any, name: str, ndim: int) -> torch.Tensor:
    tensor = torch.as_tensor(value)
    if tensor.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array, received shape {tuple(tensor.shape)}")
    return tensor


def legend_marker(color, label: str):
    from matplotlib.lines import Line2D

    return Line2D([], [], marker="o", linestyle="", color=color, markersize=6, label=label)


def legend_line(color, label: str):
    from matplotlib.lines import Line2D

    return Line2D([], [], color=color, linewidth=2, label=label)
