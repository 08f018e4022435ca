"""Paired comparisons over seeds of finished runs in bench folders (for the report scripts)."""

from __future__ import annotations

from pathlib import Path

from semantic_anchors.bench.results import summarize_values


def runs(bench: Path, dataset: str, method: str) -> dict[int, Path]:
    """``{seed: run folder}`` of the finished runs of ``dataset/method``."""
    found = {}
    for folder in sorted((bench / "runs" / dataset / method).glob("seed*")):
        if (folder / "metrics.json").is_file():
            found[int(folder.name[4:])] = folder
    return found


def task(metrics: dict) -> str:
    return "segmentation" if "mIoU" in metrics else "classification"


def paired(a: dict[int, dict], b: dict[int, dict], key: str) -> dict:
    """Summary of ``a[seed][key] - b[seed][key]`` over the seeds both have."""
    seeds = sorted(set(a) & set(b))
    diffs = [
        a[s][key] - b[s][key]
        for s in seeds
        if a[s].get(key) is not None and b[s].get(key) is not None
    ]
    out = summarize_values(diffs)
    out["seeds"] = seeds
    out["wins"] = sum(d > 0 for d in out["values"])
    return out


def cell(summary: dict) -> str:
    if not summary["n"]:
        return "–"
    text = f"{summary['mean']:+.2f}"
    if summary["n"] >= 2:
        lo, hi = summary["mean"] - summary["ci95"], summary["mean"] + summary["ci95"]
        star = " *" if lo > 0 or hi < 0 else ""
        text += f" [{lo:+.2f}, {hi:+.2f}]{star}"
    return text


def mean(values: dict[int, dict], key: str) -> str:
    s = summarize_values([m.get(key) for m in values.values()])
    if not s["n"]:
        return "–"
    return f"{s['mean']:.2f} ± {s['std']:.2f}" if s["n"] >= 2 else f"{s['mean']:.2f}"
