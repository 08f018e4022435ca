"""The words a report may use for a paired difference, decided by its 95 % t-interval alone.

A method is "significantly ahead" (or behind) of its baseline only where the 95 % t-interval of
the mean per-seed difference excludes 0; otherwise the verdict names the seeds won and says that
the interval includes 0. One function decides, so the reports, the paper-table scripts and the
README's generated results block word the same numbers the same way.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["excludes_zero", "interval", "interval_text", "verdict"]


def interval(summary: dict[str, Any]) -> tuple[float, float] | None:
    """``(lo, hi)`` of the 95 % t-interval of a :func:`summarize_values` summary (computed from
    its ``values`` where it has no ``ci95``, as in reports written before intervals were); None
    below two values (no interval)."""
    if summary.get("n", 0) < 2:
        return None
    half = summary.get("ci95")
    if (half is None or not math.isfinite(half)) and len(summary.get("values") or []) >= 2:
        from semantic_anchors.bench.results import summarize_values

        half = summarize_values(summary["values"])["ci95"]
    if half is None or not math.isfinite(half):
        return None
    return summary["mean"] - half, summary["mean"] + half


def excludes_zero(summary: dict[str, Any]) -> bool:
    """Whether the 95 % interval lies wholly above or wholly below 0."""
    bounds = interval(summary)
    return bounds is not None and (bounds[0] > 0 or bounds[1] < 0)


def interval_text(summary: dict[str, Any], digits: int = 1) -> str:
    """``[lo, hi]`` (signed), ``–`` without an interval."""
    bounds = interval(summary)
    if bounds is None:
        return "–"
    return f"[{bounds[0]:+.{digits}f}, {bounds[1]:+.{digits}f}]"


def verdict(summary: dict[str, Any], wins: int | None = None) -> str:
    """One line for a paired difference (``summary`` of per-seed ``method - baseline``).

    ``wins`` defaults to the number of positive differences. Examples: "significantly ahead
    (interval excludes 0), ahead on 5 of 5 seeds"; "ahead on 3 of 5 seeds, interval includes 0";
    "1 seed: no interval".
    """
    n = int(summary.get("n", 0))
    if n == 0:
        return "no paired seed"
    values = summary.get("values") or []
    wins = sum(v > 0 for v in values) if wins is None else int(wins)
    losses = sum(v < 0 for v in values)
    if n == 1:
        side = "ahead" if wins else ("behind" if losses else "level")
        return f"1 seed ({side}): no interval"
    if excludes_zero(summary):
        side = "ahead" if summary["mean"] > 0 else "behind"
        count = wins if side == "ahead" else losses
        return f"significantly {side} (interval excludes 0), {side} on {count} of {n} seeds"
    if wins >= losses:
        return f"ahead on {wins} of {n} seeds, interval includes 0"
    return f"behind on {losses} of {n} seeds, interval includes 0"
