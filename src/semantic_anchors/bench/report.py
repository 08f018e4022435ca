"""Write a bench folder's report: ``report.md`` + ``results.csv`` + ``results.json`` + PNG plots.

``write_report(DIR)`` can be run at any time (also on a partly finished bench): it reads the run
folders, computes or reuses the cached diagnostics, and rewrites the report.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
from pathlib import Path
from typing import Any

from semantic_anchors.bench.diagnostics import DEFAULT_SETTINGS
from semantic_anchors.bench.results import RunRecord, build_results

__all__ = ["write_report"]

_HEADERS = {
    "mIoU": "mIoU", "head_mIoU": "head", "body_mIoU": "body", "tail_mIoU": "tail",
    "mAcc": "mAcc", "aAcc": "aAcc", "top1": "top-1", "head_Acc": "head", "body_Acc": "body",
    "tail_Acc": "tail",
}  # fmt: skip
_DIAG_HEADERS = {
    "mean_compactness": "compactness ↓", "min_distance": "min centre dist",
    "mean_distance": "mean centre dist", "fisher_ratio": "Fisher ratio ↑",
}  # fmt: skip


def _cell(summary: dict | None, digits: int = 1, bold: bool = False, signed: bool = False) -> str:
    if not summary or summary["n"] == 0:
        return "–"
    text = f"{summary['mean']:{'+' if signed else ''}.{digits}f}"
    if summary["n"] >= 2 and math.isfinite(summary["std"]):
        text += f" ± {summary['std']:.{digits}f}"
    return f"**{text}**" if bold else text


def _interval(summary: dict, digits: int = 1) -> str:
    """``[lo, hi]`` of the paired t-interval, starred when it excludes 0; ``–`` below 2 seeds."""
    half = summary.get("ci95", math.nan)
    if summary["n"] < 2 or not math.isfinite(half):
        return "–"
    lo, hi = summary["mean"] - half, summary["mean"] + half
    text = f"[{lo:+.{digits}f}, {hi:+.{digits}f}]"
    return f"{text} *" if lo > 0 or hi < 0 else text


def _table(header: list[str], rows: list[list[str]], align: list[str] | None = None) -> list[str]:
    align = align or ["l"] + ["r"] * (len(header) - 1)
    sep = ["---:" if a == "r" else "---" for a in align]
    return [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join(sep) + " |",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def _best(methods: dict, key: str) -> float:
    """The highest mean of a column; NaN (nothing bold) when every method ties."""
    means = [m["metrics"][key]["mean"] for m in methods.values() if m["metrics"][key]["n"]]
    return max(means) if len(set(means)) > 1 else math.nan


def _overall_section(ds: dict) -> list[str]:
    methods = ds["methods"]
    keys = list(next(iter(methods.values()))["metrics"])
    best = {k: _best(methods, k) for k in keys}
    rows = []
    for name, m in methods.items():
        n = len(m["seeds"])
        expected = n + len(m["missing_seeds"])
        cells = [
            _cell(
                m["metrics"][k],
                bold=m["metrics"][k]["n"] > 0 and m["metrics"][k]["mean"] == best[k],
            )
            for k in keys
        ]
        seeds = f"{n}" if n == expected else f"{n} of {expected}"
        for seed, step in m.get("diverged", {}).items():
            seeds += f"; seed {seed} diverged at step {'?' if step is None else step}"
        rows.append([f"`{name}`", *cells, seeds, _cell(m["train_minutes"])])
    header = ["method", *(_HEADERS.get(k, k) for k in keys), "seeds", "train min"]
    return _table(header, rows)


def _baseline_section(ds: dict) -> list[str]:
    rows = []
    keys: list[str] = []
    for name, m in ds["methods"].items():
        vs = m.get("vs_baseline")
        if not vs or not vs["seeds"]:
            continue
        keys = list(vs["metrics"])
        cells = [_cell(vs["metrics"][k], signed=True) for k in keys]
        first = vs["metrics"][keys[0]]
        clear = first["n"] >= 2 and abs(first["mean"]) > first["std"]
        rows.append([
            f"`{name}`", f"`{vs['baseline']}`", *cells,
            f"{vs['wins']} of {len(vs['seeds'])}", "yes" if clear else "no", _interval(first),
        ])  # fmt: skip
    if not rows:
        return []
    first_name = _HEADERS.get(keys[0], keys[0])
    header = [
        "method", "baseline", *(f"Δ {_HEADERS.get(k, k)}" for k in keys), "wins",
        f"Δ {first_name} beyond std", f"95 % CI of Δ {first_name}",
    ]  # fmt: skip
    return _table(header, rows)


def _per_class_section(ds: dict) -> list[str]:
    freq = ds["class_frequencies"]
    total = sum(freq) or 1.0
    group_of = {int(i): g for g, members in ds["groups"].items() for i in members}
    order = sorted(range(len(freq)), key=lambda c: -freq[c])
    methods = ds["methods"]
    rows = []
    for c in order:
        cells = []
        for m in methods.values():
            value = m["per_class"]["mean"][c]
            cells.append("–" if not math.isfinite(value) else f"{value:.1f}")
        rows.append(
            [ds["class_names"][c], group_of.get(c, ""), f"{100 * freq[c] / total:.2f}", *cells]
        )
    header = ["class", "group", "train share %", *(f"`{name}`" for name in methods)]
    return _table(header, rows, ["l", "l", *["r"] * (len(header) - 2)])


def _diagnostics_section(ds: dict, computed: bool) -> list[str]:
    rows = []
    for name, m in ds["methods"].items():
        if not m["diagnostics_runs"]:
            continue
        cells = [_cell(m["diagnostics"][k], digits=3) for k in _DIAG_HEADERS]
        gate = _cell(m["gate_open"], digits=2) if "gate_open" in m else "–"
        rows.append([f"`{name}`", *cells, gate, str(m["diagnostics_runs"])])
    if not rows:
        if not computed:
            return ["Not computed (`--no-diagnostics`)."]
        return ["No diagnostics: no run of this dataset has a checkpoint."]
    header = ["method", *_DIAG_HEADERS.values(), "gate open", "runs"]
    return _table(header, rows)


def _consistency_section(ds: dict) -> list[str]:
    rows = []
    for name, m in ds["methods"].items():
        cons = m["consistency"]
        if not m["diagnostics_runs"]:
            continue
        vec = cons.get("regularizer_vectors")
        vec_text = f"{_cell(vec, digits=3)} ({vec['name']})" if vec and vec["n"] else "–"
        rows.append(
            [f"`{name}`", _cell(cons["centres"], digits=3), vec_text, str(cons["centres"]["pairs"])]
        )
    if not rows:
        return []
    return _table(["method", "class centres", "regularizer's class vectors", "seed pairs"], rows)


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


def _tuning_section(tuning: dict, dataset: str) -> list[str]:
    """Every grid trial's held-out score, the chosen one marked."""
    methods = (tuning.get("datasets") or {}).get(dataset) or {}
    if not methods:
        return []
    seeds = tuning.get("seeds") or []
    holdout = float(tuning.get("holdout", 0.0))
    metric = next((m.get("metric") for m in methods.values() if m.get("metric")), "metric")
    lines = [
        "### Tuning on a held-out part of the training data", "",
        f"Every tuned method trained each trial of its grid on {100 * (1 - holdout):.0f}% of the "
        f"training items (seed{'s' if len(seeds) != 1 else ''} {', '.join(map(str, seeds))}) "
        f"and was scored on the other {100 * holdout:.0f}%; the reported validation set was not "
        f"used. The runs above use the trial marked ✓ (the best held-out {metric}; the first "
        "on a tie). A choice at the first or last trial of a grid is marked *edge*: a wider grid "
        "might have found a better value.", "",
    ]  # fmt: skip
    rows = []
    for method, info in methods.items():
        trials, chosen = info.get("trials") or [], info.get("chosen")
        for index, trial in enumerate(trials):
            mean = trial.get("mean")
            mark = ""
            if index == chosen:
                mark = "✓" + (
                    " *edge*" if len(trials) > 2 and index in (0, len(trials) - 1) else ""
                )
            rows.append([
                f"`{method}`", f"`{trial.get('label', '')}`",
                "–" if mean is None else f"{mean:.2f}", mark,
            ])  # fmt: skip
    return lines + _table(["method", "trial", f"held-out {metric}", "chosen"], rows,
                          ["l", "l", "r", "l"])  # fmt: skip


def _commands(results: dict, runs: dict[str, dict[str, list[RunRecord]]]) -> list[str]:
    lines = ["## Commands", ""]
    if results["invocations"]:
        lines += ["```bash", *(i["command"] for i in results["invocations"]), "```", ""]
    run_commands = []
    for methods in runs.values():
        for records in methods.values():
            for r in records:
                file = r.path / "command.txt"
                if file.is_file():
                    run_commands += file.read_text(errors="replace").strip().splitlines()
    if run_commands:
        lines += [
            f"<details><summary>the {len(run_commands)} training command(s) run</summary>",
            "", "```bash", *run_commands, "```", "", "</details>", "",
        ]  # fmt: skip
    return lines


def _diagnostics_sentence(runs: dict[str, dict[str, list[RunRecord]]]) -> str:
    """Says how many validation images the diagnostics used, per dataset (nothing if none ran)."""
    counts: dict[str, set[int]] = {}
    records = [r for methods in runs.values() for rs in methods.values() for r in rs]
    for record in records:
        if record.diagnostics is not None and record.diagnostics.get("num_images") is not None:
            counts.setdefault(record.dataset, set()).add(int(record.diagnostics["num_images"]))
    if not counts:
        return ""
    parts = [
        f"`{name}`: {', '.join(str(n) for n in sorted(seen))}" for name, seen in counts.items()
    ]
    return (
        " Diagnostics are in feature units, measured on the first validation images of each run "
        f"(images used: {'; '.join(parts)}; see `docs/bench.md`)."
    )


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
    report_dir.mkdir(parents=True, exist_ok=True)
    if plots and importlib.util.find_spec("matplotlib") is None:
        plots = False
        if echo is not None:
            echo("matplotlib is not installed: the report has no plots (pip install matplotlib)")
    lines = [f"# Benchmark `{results['suite']}`", ""]
    if results["description"]:
        lines += [results["description"].strip(), ""]
    lines += [
        "Numbers are mean ± sample standard deviation (ddof = 1) over seeds; rates are "
        "percentages. Bold: the best mean of a column." + _diagnostics_sentence(runs), "",
    ]  # fmt: skip
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
        lines += ["### Results", "", *_overall_section(ds), ""]
        tuning = _tuning_section(results.get("tuning") or {}, dataset)
        if tuning:
            lines += [*tuning, ""]
        paired = _baseline_section(ds)
        if paired:
            lines += [
                "### Against the baseline, seed by seed", "",
                "Difference from the baseline run with the same seed (same initialisation of the "
                "model and the same data order), mean ± std over seeds. Wins: seeds on which the "
                "method's overall metric is higher. Then whether the size of the mean difference "
                "is larger than its std, and the 95 % t-interval of the mean paired difference "
                "(starred when it excludes 0; with few seeds it is wide).", "",
                *paired, "",
            ]  # fmt: skip
        lines += [
            "### Per class, most frequent first (mean over seeds)",
            "",
            *_per_class_section(ds),
            "",
        ]
        lines += [
            "### Representation diagnostics", "",
            "Compactness: mean squared distance of a feature to its class centre; centre "
            "distances: Euclidean, between class centres; Fisher ratio: between-class over "
            "within-class scatter (scale-free, larger = better separated). Gate open: fraction of "
            "logged training steps in which SAR's gate was open.", "",
            *_diagnostics_section(ds, diagnostics), "",
        ]  # fmt: skip
        consistency = _consistency_section(ds)
        if consistency:
            lines += [
                "### Class-relationship consistency across seeds", "",
                "Pearson correlation of the pairwise class-centre distances of two seeds, "
                "averaged over seed pairs (1 = every seed agrees on which classes are close). "
                "The paper's Fig. 1 claim: semantic anchors keep the class relationships stable "
                "across runs where prototypes (class centres) do not.", "",
                *consistency, "",
            ]  # fmt: skip
        if plots:
            plot_list = _plots(dataset, ds, runs[dataset], report_dir / "plots", embedding)
            lines += ["### Plots", ""]
            for label, path in plot_list:
                rel = path.relative_to(report_dir).as_posix()
                lines += [f"**{label}**", "", f"![{dataset} {label}]({rel})", ""]
    lines += _commands(results, runs)
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
