"""Write a published report's ``report.md`` (and ``results.csv``) again from its ``results.json``
alone: the run folders of a published report are not kept, but its numbers, per-seed values and
provenance are all in ``results.json``, so a new table or wording reaches every published report
without retraining."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from semantic_anchors.bench.report import _PLOT_FILES, _render

__all__ = ["published_commands", "rerender_report"]


def rerender_report(report_dir: str | Path, **changes: Any) -> Path:
    """Write ``REPORT_DIR/report.md`` (and ``results.csv``) again from ``results.json`` alone.

    The plots already in ``REPORT_DIR/plots`` and the per-run commands of the old ``report.md``
    are kept; ``changes`` are set in ``results.json`` first (e.g. ``superseded_by``,
    ``reproduction``, ``description``). The numbers are the ones ``results.json`` holds: nothing
    is recomputed.

    Raises:
        FileNotFoundError: ``REPORT_DIR/results.json`` does not exist.
    """
    report_dir = Path(report_dir)
    file = report_dir / "results.json"
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no results.json to render (run `report` on a bench)")
    results = _restore_nan(json.loads(file.read_text()))
    results.update(changes)
    if "diagnostics_images" not in results:  # an older report says it in its text only
        results["diagnostics_images"] = _published_images(report_dir / "report.md")
    commands = [
        p["command"] for ds in results["datasets"].values() for m in ds["methods"].values()
        for p in (m.get("runs") or {}).values() if p.get("command")
    ] or published_commands(report_dir / "report.md")  # fmt: skip
    plot_lists: dict[str, list[tuple[str, Path]]] = {}
    for dataset, ds in results["datasets"].items():
        metric = "IoU" if ds.get("task") == "segmentation" else "accuracy"
        found = [
            (label.format(metric=metric), report_dir / "plots" / f"{dataset}-{suffix}.png")
            for label, suffix in _PLOT_FILES
        ]
        plot_lists[dataset] = [(label, path) for label, path in found if path.is_file()]
    return _render(results, report_dir, plot_lists, commands)


def published_commands(report: Path) -> list[str]:
    """The per-run training commands listed in an existing ``report.md``'s ``<details>``."""
    if not report.is_file():
        return []
    text = report.read_text(errors="replace")
    start = text.find("<details>", text.find("## Commands"))
    if start < 0:
        return []
    block = text[start : text.find("</details>", start)]
    return [line for line in block.splitlines() if line.startswith("semantic-anchors ")]


def _published_images(report: Path) -> dict[str, list[int]]:
    """``images used: `a`: 500; `b`: 1000`` of an existing report.md, as a dict."""

    text = report.read_text(errors="replace") if report.is_file() else ""
    found = re.search(r"images used: (.*?); see", text)
    if not found:
        return {}
    pairs = re.findall(r"`([^`]+)`: ([\d, ]+)", found.group(1))
    return {name: [int(n) for n in counts.split(",")] for name, counts in pairs}


def _restore_nan(value: Any, key: str = "") -> Any:
    """The inverse of :func:`_finite` where NaN is meant: summary statistics and per-class lists."""
    if isinstance(value, dict):
        return {k: _restore_nan(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_restore_nan(v, key) for v in value]
    if value is None and key in ("mean", "std", "ci95"):
        return math.nan
    return value
