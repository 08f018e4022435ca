"""Write a bench folder's report: ``report.md`` + ``results.csv`` + ``results.json`` + PNG plots.

``write_report(DIR)`` can be run at any time (also on a partly finished bench): it reads the run
folders, computes or reuses the cached diagnostics, and rewrites the report.
:func:`semantic_anchors.bench.rerender.rerender_report` writes a published report again from its
``results.json`` alone.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
from pathlib import Path
from typing import Any

from semantic_anchors.bench.diagnostics import DEFAULT_SETTINGS
from semantic_anchors.bench.provenance import describe_code
from semantic_anchors.bench.report_tables import (
    baseline_section,
    consistency_section,
    diagnostics_section,
    overall_section,
    per_class_section,
    per_seed_section,
    tuning_section,
)
from semantic_anchors.bench.results import RunRecord, build_results

__all__ = ["write_report"]

# The plots of a dataset: (label, file suffix); the first label takes the per-class metric name.
_PLOT_FILES = (
    ("per-class {metric}", "per-class"), ("feature embedding", "embedding"),
    ("class-centre similarity", "centre-similarity"), ("anchor similarity", "anchor-similarity"),
    ("training curves", "curves"),
)  # fmt: skip


def _plots(
    dataset: str, ds: dict, records: dict[str, list[RunRecord]], plot_dir: Path, embedding: str
) -> list[tuple[str, Path]]:
    from semantic_anchors import viz

    out: list[tuple[str, Path]] = []
    metric = "IoU" if ds["task"] == "segmentation" else "accuracy"
    methods = ds["methods"]
    out.append(("per-class " + metric, viz.plot_per_class_bars(
        {k: m["per_class"]["mean"] for k, m in methods.items() if m["seeds"]},
        plot_dir / f"{dataset}-per-class.png", class_names=ds["class_names"],
        class_frequencies=ds["class_frequencies"], groups=ds["groups"], metric=metric,
        errors={k: m["per_class"]["std"] for k, m in methods.items() if m["seeds"]},
        title=f"{dataset}: mean over seeds, error bar = std",
    )))  # fmt: skip
    firsts = {
        name: next((r.diagnostics for r in rs if r.diagnostics is not None), None)
        for name, rs in records.items()
    }
    firsts = {k: v for k, v in firsts.items() if v is not None}
    with_samples = {k: v for k, v in firsts.items() if len(v["sample_labels"])}
    if with_samples:
        out.append(("feature embedding", viz.plot_feature_embedding(
            {k: v["samples"] for k, v in with_samples.items()},
            {k: v["sample_labels"] for k, v in with_samples.items()},
            plot_dir / f"{dataset}-embedding.png", class_names=ds["class_names"],
            method=embedding, title=f"{dataset}, first seed of each method",
        )))  # fmt: skip
    if firsts:
        out.append(("class-centre similarity", viz.plot_similarity_heatmap(
            {k: v["centers"] for k, v in firsts.items()},
            plot_dir / f"{dataset}-centre-similarity.png",
            class_names=ds["class_names"], center=True,
            title=f"{dataset}: class centres (first seed of each method)",
        )))  # fmt: skip
    vectors = {
        f"{k}: {v['regularizer_vectors_name']}": v["regularizer_vectors"]
        for k, v in firsts.items() if v.get("regularizer_vectors") is not None
    }  # fmt: skip
    if vectors:
        out.append(("anchor similarity", viz.plot_similarity_heatmap(
            vectors, plot_dir / f"{dataset}-anchor-similarity.png", class_names=ds["class_names"],
            center=True, title=f"{dataset}: the regularizers' class vectors (first seed)",
        )))  # fmt: skip
    runs = {k: [r.path for r in rs if r.metrics is not None] for k, rs in records.items()}
    runs = {k: v for k, v in runs.items() if v}
    if runs:
        out.append(("training curves", viz.plot_training_curves(
            runs, plot_dir / f"{dataset}-curves.png", title=f"{dataset} (every seed)"
        )))  # fmt: skip
    return out


def _csv_rows(results: dict) -> list[list[Any]]:
    rows: list[list[Any]] = []

    def add(dataset, method, section, metric, s):
        rows.append([dataset, method, section, metric, s["mean"], s["std"], s["n"]])

    for dataset, ds in results["datasets"].items():
        for method, m in ds.get("methods", {}).items():
            for key, s in m["metrics"].items():
                add(dataset, method, "overall", key, s)
            add(dataset, method, "overall", "train_minutes", m["train_minutes"])
            for c, name in enumerate(ds["class_names"]):
                s = {k: m["per_class"][k][c] for k in ("mean", "std", "n")}
                add(dataset, method, "per_class", f"{ds['per_class_key']}:{name}", s)
            for key, s in m["diagnostics"].items():
                add(dataset, method, "diagnostics", key, s)
            if "gate_open" in m:
                add(dataset, method, "diagnostics", "gate_open_fraction", m["gate_open"])
            for key, s in m.get("vs_baseline", {}).get("metrics", {}).items():
                add(dataset, method, f"vs_{m['vs_baseline']['baseline']}", key, s)
            for view, s in m["consistency"].items():
                add(dataset, method, "consistency", view, s)
    return rows


def _run_commands(runs: dict[str, dict[str, list[RunRecord]]]) -> list[str]:
    commands = []
    for methods in runs.values():
        for records in methods.values():
            for r in records:
                file = r.path / "command.txt"
                if file.is_file():
                    commands += file.read_text(errors="replace").strip().splitlines()
    return commands


def _commands(results: dict, run_commands: list[str]) -> list[str]:
    lines = ["## Commands", ""]
    if results["invocations"]:
        lines += ["```bash", *(i["command"] for i in results["invocations"]), "```", ""]
    if run_commands:
        lines += [
            f"<details><summary>the {len(run_commands)} training command(s) run</summary>",
            "", "```bash", *run_commands, "```", "", "</details>", "",
        ]  # fmt: skip
    return lines


def _diagnostics_images(runs: dict[str, dict[str, list[RunRecord]]]) -> dict[str, list[int]]:
    """Per dataset, the numbers of validation images the diagnostics used."""
    counts: dict[str, set[int]] = {}
    records = [r for methods in runs.values() for rs in methods.values() for r in rs]
    for record in records:
        if record.diagnostics is not None and record.diagnostics.get("num_images") is not None:
            counts.setdefault(record.dataset, set()).add(int(record.diagnostics["num_images"]))
    return {name: sorted(seen) for name, seen in counts.items()}


def _diagnostics_sentence(images: dict[str, list[int]]) -> str:
    """Says how many validation images the diagnostics used, per dataset (nothing if none ran)."""
    if not images:
        return ""
    parts = [f"`{name}`: {', '.join(str(n) for n in seen)}" for name, seen in images.items()]
    return (
        " Diagnostics are in feature units, measured on the first validation images of each run "
        f"(images used: {'; '.join(parts)}; see `docs/bench.md`)."
    )


def _provenance_lines(results: dict) -> list[str]:
    """Which code trained the runs, whether today's code was checked to reproduce them, and the
    report that supersedes this one."""
    lines = []
    if results.get("superseded_by"):
        link = results["superseded_by"]
        lines += [f"**Superseded** by [{link['title']}]({link['path']}): {link['why']}", ""]
    code = results.get("code")
    text = describe_code(code) if code is not None else "not recorded (an earlier report)"
    lines += [f"Code: {text}.", ""]
    check = results.get("reproduction")
    if check:
        run = f"`{check['dataset']}/{check['method']}/seed{check['seed']}`"
        where = f"commit {str(check.get('commit'))[:10]}, {check.get('date', '')}"
        if check["equal"]:
            lines.append(f"Reproduction check ({where}): {run} re-run with its command, bit-equal.")
        else:
            key = next(iter(check["published"]), None)
            diff = ""
            if key is not None and check["now"].get(key) is not None:
                diff = (
                    f" ({key} {check['published'][key]:.2f} published, {check['now'][key]:.2f} now)"
                )
            lines.append(
                f"Reproduction check ({where}): {run} re-run with its command gives other numbers"
                f"{diff}: **today's code does not reproduce this report**; it is kept as the "
                "record of the code that produced it until the suite is re-run."
            )
        lines.append("")
    return lines


_STATS = (
    "Numbers are mean ± sample standard deviation (ddof = 1) over seeds; rates are percentages. "
    "Bold in the results: the best mean of a column. Against the baseline, every difference is "
    "taken seed by seed (same initialisation and data order), with the 95 % t-interval of its "
    'mean; "significantly" ahead or behind only where that interval excludes 0 (the Δ is then '
    'bold). With few seeds the interval is wide: a verdict that includes 0 means "not shown", '
    'not "no effect".'
)


def _render(
    results: dict, report_dir: Path, plot_lists: dict[str, list[tuple[str, Path]]],
    run_commands: list[str],
) -> Path:  # fmt: skip
    lines = [f"# Benchmark `{results['suite']}`", ""]
    if results["description"]:
        lines += [results["description"].strip(), ""]
    lines += _provenance_lines(results)
    images = results.get("diagnostics_images") or {}
    lines += [_STATS + _diagnostics_sentence(images), ""]
    computed = results.get("diagnostics_computed")
    for dataset, ds in results["datasets"].items():
        recipe = f", recipe `{ds['recipe']}`" if ds.get("recipe") else ""
        lines += [
            f"## `{dataset}`"
            + (f" ({ds['task']}{recipe}, {ds['steps']} steps)" if ds["task"] else ""),
            "",
        ]
        if not ds["methods"] or ds["task"] is None:
            lines += ["No finished run yet.", ""]
            continue
        lines += ["### Results", "", *overall_section(ds), ""]
        tuning = tuning_section(results.get("tuning") or {}, dataset)
        if tuning:
            lines += [*tuning, ""]
        paired = baseline_section(ds)
        if paired:
            lines += [
                "### Against the baseline, seed by seed", "",
                "Mean ± std over seeds of the difference from the baseline run with the same "
                "seed; the 95 % t-interval of the mean difference of the first metric; seeds won "
                "(the method's first metric higher); the verdict that interval allows.", "",
                *paired, "",
            ]  # fmt: skip
        lines += ["### Per seed", "", *per_seed_section(ds), ""]
        lines += ["### Per class, most frequent first (mean over seeds)", ""]
        lines += [*per_class_section(ds), ""]
        has_diagnostics = any(m["diagnostics_runs"] for m in ds["methods"].values())
        lines += [
            "### Representation diagnostics", "",
            "Compactness: mean squared distance of a feature to its class centre; centre "
            "distances: Euclidean, between class centres; Fisher ratio: between-class over "
            "within-class scatter (scale-free, larger = better separated). Gate open: fraction of "
            "logged training steps in which SAR's gate was open.", "",
            *diagnostics_section(ds, has_diagnostics if computed is None else computed), "",
        ]  # fmt: skip
        consistency = consistency_section(ds)
        if consistency:
            lines += [
                "### Class-relationship consistency across seeds", "",
                "Pearson correlation of the pairwise class-centre distances of two seeds, "
                "averaged over seed pairs (1 = every seed agrees on which classes are close). "
                "The paper's Fig. 1 claim: semantic anchors keep the class relationships stable "
                "across runs where prototypes (class centres) do not.", "",
                *consistency, "",
            ]  # fmt: skip
        plot_list = plot_lists.get(dataset) or []
        if plot_list:
            lines += ["### Plots", ""]
            for label, path in plot_list:
                rel = path.relative_to(report_dir).as_posix()
                lines += [f"**{label}**", "", f"![{dataset} {label}]({rel})", ""]
    lines += _commands(results, run_commands)
    report = report_dir / "report.md"
    report.write_text("\n".join(lines).rstrip() + "\n")
    (report_dir / "results.json").write_text(
        json.dumps(_finite(results), indent=2, default=_json_default, allow_nan=False)
    )
    with open(report_dir / "results.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["dataset", "method", "section", "metric", "mean", "std", "n"])
        writer.writerows(_csv_rows(results))
    return report


def write_report(
    bench_dir: str | Path,
    *,
    report_dir: str | Path | None = None,
    embedding: str = "auto",
    plots: bool = True,
    diagnostics: bool = True,
    recompute: bool = False,
    max_images: int = DEFAULT_SETTINGS["max_images"],
    samples_per_class: int = DEFAULT_SETTINGS["samples_per_class"],
    echo=None,
) -> Path:
    """Write ``report.md``, ``results.csv``, ``results.json`` and ``plots/*.png``.

    Args:
        bench_dir: the bench folder (``DIR/runs/<dataset>/<method>/seed<k>``).
        report_dir: where to write (default ``bench_dir``), e.g. ``docs/results/compare``.
        embedding: ``"auto"``, ``"umap"`` or ``"pca"`` for the feature-embedding plot.
        plots: draw the PNGs.
        diagnostics: compute (or read the cached) representation diagnostics; without them the
            report has the metric tables, per-class bars and training curves only.
        recompute: recompute the cached diagnostics.
        max_images / samples_per_class: diagnostics settings (see
            :func:`~semantic_anchors.bench.diagnostics.compute_diagnostics`).

    Returns:
        The path of ``report.md``.

    Raises:
        FileNotFoundError: ``bench_dir`` does not exist or is not a bench folder (no ``runs/``);
            nothing is created.
        ValueError: a corrupt ``suite.yaml``, ``bench.json``, ``metrics.json`` or
            ``diagnostics.pt``; the message names the file.
    """
    bench_dir = Path(bench_dir)
    report_dir = Path(report_dir) if report_dir is not None else bench_dir
    # Read everything first: a missing bench folder is never created, a corrupt file is named
    # before anything is written.
    results, runs = build_results(
        bench_dir, diagnostics=diagnostics, recompute=recompute, max_images=max_images,
        samples_per_class=samples_per_class, echo=echo,
    )  # fmt: skip
    results["diagnostics_computed"] = diagnostics
    results["diagnostics_images"] = _diagnostics_images(runs)
    report_dir.mkdir(parents=True, exist_ok=True)
    if plots and importlib.util.find_spec("matplotlib") is None:
        plots = False
        if echo is not None:
            echo("matplotlib is not installed: the report has no plots (pip install matplotlib)")
    plot_lists = {}
    if plots:
        for dataset, ds in results["datasets"].items():
            if ds["methods"] and ds["task"] is not None:
                plot_lists[dataset] = _plots(
                    dataset, ds, runs[dataset], report_dir / "plots", embedding
                )
    return _render(results, report_dir, plot_lists, _run_commands(runs))


def _finite(value: Any) -> Any:
    """NaN / inf -> None, so ``results.json`` is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return value.as_posix()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
