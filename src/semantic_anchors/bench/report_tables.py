"""The Markdown tables of a bench report, each rendered from ``results.json``-shaped data alone
(so a published report can be re-rendered without its run folders)."""

from __future__ import annotations

import math

from semantic_anchors.bench.verdict import excludes_zero, interval_text, verdict

__all__ = [
    "baseline_section", "consistency_section", "diagnostics_section", "overall_section",
    "per_class_section", "per_seed_section", "table", "tuning_section",
]  # fmt: skip

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


def table(header: list[str], rows: list[list[str]], align: list[str] | None = None) -> list[str]:
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


def overall_section(ds: dict) -> list[str]:
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
    return table(header, rows)


def baseline_section(ds: dict) -> list[str]:
    """Every method against its baseline: the mean paired difference of each group metric, the
    95 % t-interval of the primary one, the seeds won and the verdict (:func:`verdict`)."""
    rows = []
    keys: list[str] = []
    for name, m in ds["methods"].items():
        vs = m.get("vs_baseline")
        if not vs or not vs["seeds"]:
            continue
        keys = list(vs["metrics"])
        first = vs["metrics"][keys[0]]
        cells = [_cell(vs["metrics"][k], signed=True, bold=k == keys[0] and excludes_zero(first))
                 for k in keys]  # fmt: skip
        rows.append([
            f"`{name}`", f"`{vs['baseline']}`", *cells, interval_text(first),
            f"{vs['wins']} of {len(vs['seeds'])}", verdict(first, vs["wins"]),
        ])  # fmt: skip
    if not rows:
        return []
    first_name = _HEADERS.get(keys[0], keys[0])
    header = [
        "method", "baseline", *(f"Δ {_HEADERS.get(k, k)}" for k in keys),
        f"95 % interval of Δ {first_name}", "seeds won", "verdict",
    ]  # fmt: skip
    return table(header, rows, ["l", "l", *["r"] * (len(keys) + 2), "l"])


def per_seed_section(ds: dict) -> list[str]:
    """The primary metric of every run, one column per seed, and under each method with a
    baseline its per-seed difference from it."""
    primary = ds["primary"]
    methods = ds["methods"]
    seeds = sorted({s for m in methods.values() for s in (*m["seeds"], *m["missing_seeds"])})
    if not seeds:
        return []
    rows = []
    for name, m in methods.items():
        summary = m["metrics"][primary]
        values = dict(zip(m["seeds"], summary["values"], strict=False))
        if summary["n"] != len(m["seeds"]):  # a run without the metric: values do not align
            values = {}
        rows.append([f"`{name}`", *(f"{values[s]:.2f}" if s in values else "–" for s in seeds),
                     _cell(summary, digits=2)])  # fmt: skip
        vs = m.get("vs_baseline")
        if vs and vs["seeds"]:
            d = vs["metrics"][primary]
            diffs = dict(zip(vs["seeds"], d["values"], strict=False)) if d["n"] == len(
                vs["seeds"]) else {}  # fmt: skip
            rows.append([f"Δ vs `{vs['baseline']}`",
                         *(f"{diffs[s]:+.2f}" if s in diffs else "" for s in seeds),
                         _cell(d, digits=2, signed=True)])  # fmt: skip
    header = ["method", *(f"seed {s}" for s in seeds), "mean ± std"]
    return table(header, rows)


def per_class_section(ds: dict) -> list[str]:
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
    return table(header, rows, ["l", "l", *["r"] * (len(header) - 2)])


def diagnostics_section(ds: dict, computed: bool) -> list[str]:
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
    return table(header, rows)


def consistency_section(ds: dict) -> list[str]:
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
    return table(["method", "class centres", "regularizer's class vectors", "seed pairs"], rows)


def tuning_section(tuning: dict, dataset: str) -> list[str]:
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
    return lines + table(["method", "trial", f"held-out {metric}", "chosen"], rows,
                          ["l", "l", "r", "l"])  # fmt: skip
