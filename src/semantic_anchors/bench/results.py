"""Collect a bench folder's runs and reduce them to numbers: mean +- std over seeds, per-class
means, representation diagnostics and the class-relationship consistency across seeds.

Everything here is plain data (JSON-ready dicts); :mod:`semantic_anchors.bench.report` renders it.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from semantic_anchors.bench.diagnostics import DEFAULT_SETTINGS, load_diagnostics
from semantic_anchors.bench.provenance import code_summary, diverged_steps, run_provenance
from semantic_anchors.metrics import relationship_consistency

__all__ = [
    "CLASSIFICATION_KEYS",
    "DIAGNOSTIC_KEYS",
    "SEGMENTATION_KEYS",
    "RunRecord",
    "build_results",
    "discover_runs",
    "paired_differences",
    "pairwise_consistency",
    "read_json_object",
    "read_metrics",
    "summarize_values",
]

SEGMENTATION_KEYS = ("mIoU", "head_mIoU", "body_mIoU", "tail_mIoU", "mAcc", "aAcc")
CLASSIFICATION_KEYS = ("top1", "head_Acc", "body_Acc", "tail_Acc", "mAcc")
DIAGNOSTIC_KEYS = ("mean_compactness", "min_distance", "mean_distance", "fisher_ratio")


@dataclass
class RunRecord:
    """One run folder of a bench: its metrics (None when unfinished) and diagnostics."""

    dataset: str
    method: str
    seed: int
    path: Path
    metrics: dict | None
    diagnostics: dict | None = None


# Student's t 0.975 quantiles for 1..30 degrees of freedom (two-sided 95 % intervals).
_T975 = (
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
    2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
    2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
)  # fmt: skip


def t_quantile_975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom (a table up to 30, then
    the Cornish-Fisher expansion around the normal quantile, within 1e-4 of the exact value)."""
    if df < 1:
        raise ValueError(f"df: expected an int >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def summarize_values(values: list[Any]) -> dict[str, Any]:
    """``mean``, ``std`` (sample std, ddof=1; NaN for fewer than two values), ``ci95`` (the
    half-width of the 95 % t-interval of the mean, ``t * std / sqrt(n)``; NaN below two values),
    ``n`` and the finite ``values`` themselves; None / NaN entries are left out."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(finite)
    mean = float(np.mean(finite)) if n else math.nan
    std = float(np.std(finite, ddof=1)) if n >= 2 else math.nan
    ci95 = t_quantile_975(n - 1) * std / math.sqrt(n) if n >= 2 else math.nan
    return {"mean": mean, "std": std, "ci95": ci95, "n": n, "values": finite}


def paired_differences(
    runs: list[RunRecord], baseline: list[RunRecord], keys: tuple[str, ...]
) -> dict[str, Any]:
    """Per-seed differences ``run - baseline`` of ``keys`` over the seeds both have finished.

    A seed fixes the shared model initialisation and the data order, so the spread of these
    differences is what decides whether a method beats its baseline, not the spread of each
    method alone.

    Returns:
        ``seeds`` (the common ones), ``metrics`` (``key -> summarize_values`` of the differences)
        and ``wins``: seeds on which the first key is strictly higher than the baseline's.
    """
    base = {r.seed: r.metrics for r in baseline if r.metrics is not None}
    matched = [r for r in runs if r.metrics is not None and r.seed in base]
    pairs = [(r.metrics, base[r.seed]) for r in matched]

    def diff(a: dict, b: dict, key: str) -> float | None:
        if a.get(key) is None or b.get(key) is None:
            return None
        return float(a[key]) - float(b[key])

    metrics = {k: summarize_values([diff(a, b, k) for a, b in pairs]) for k in keys}
    wins = sum(1 for d in metrics[keys[0]]["values"] if d > 0)
    return {"seeds": [r.seed for r in matched], "metrics": metrics, "wins": wins}


def pairwise_consistency(vectors: list[Any], metric: str = "euclidean") -> dict[str, Any]:
    """Mean (and std) over every pair of runs of :func:`relationship_consistency` of their class
    vectors (centres, semantic anchors, ...): how much the runs agree on which classes are close.
    """
    import torch

    mats = [torch.as_tensor(v, dtype=torch.float64) for v in vectors if v is not None]
    values = [
        float(relationship_consistency(a, b, metric=metric))
        for a, b in itertools.combinations(mats, 2)
    ]
    out = summarize_values(values)
    out["pairs"] = len(values)
    return out


def _seed_of(path: Path) -> int | None:
    name = path.name
    return int(name[4:]) if name.startswith("seed") and name[4:].isdigit() else None


def discover_runs(bench_dir: str | Path) -> dict[str, dict[str, list[RunRecord]]]:
    """``{dataset: {method: [RunRecord per seed]}}`` of ``DIR/runs``, in the order of
    ``DIR/suite.yaml`` when present (expected seeds without a folder appear with ``metrics=None``),
    else alphabetically.

    Raises:
        FileNotFoundError: ``DIR`` or ``DIR/runs`` does not exist.
        ValueError: a corrupt ``suite.yaml`` or ``metrics.json`` (names the file).
    """
    bench_dir = Path(bench_dir)
    runs_dir = bench_dir / "runs"
    if not bench_dir.is_dir():
        raise FileNotFoundError(
            f"{bench_dir} is not a bench folder: it does not exist (expected a folder with "
            "runs/<dataset>/<method>/seed<k>/, as `semantic-anchors bench` writes)"
        )
    if not runs_dir.is_dir():
        raise FileNotFoundError(
            f"{bench_dir} is not a bench folder: no runs/ inside (expected "
            "runs/<dataset>/<method>/seed<k>/, as `semantic-anchors bench` writes)"
        )
    suite = _read_suite(bench_dir)
    found: dict[str, dict[str, dict[int, Path]]] = {}
    for seed_dir in sorted(runs_dir.glob("*/*/seed*")):
        seed = _seed_of(seed_dir)
        if seed is not None and seed_dir.is_dir():
            dataset, method = seed_dir.parent.parent.name, seed_dir.parent.name
            found.setdefault(dataset, {}).setdefault(method, {})[seed] = seed_dir
    if suite:
        datasets = list(suite.get("datasets", {})) + sorted(
            set(found) - set(suite.get("datasets", {}))
        )
        methods_order = list(suite.get("methods", {}))
        seeds = list(suite.get("seeds", []))
    else:
        datasets, methods_order, seeds = sorted(found), [], []
    out: dict[str, dict[str, list[RunRecord]]] = {}
    for dataset in datasets:
        present = found.get(dataset, {})
        methods = methods_order + sorted(set(present) - set(methods_order))
        out[dataset] = {}
        for method in methods:
            paths = dict(present.get(method, {}))
            for seed in seeds:
                paths.setdefault(seed, runs_dir / dataset / method / f"seed{seed}")
            out[dataset][method] = [
                RunRecord(dataset, method, seed, path, read_metrics(path))
                for seed, path in sorted(paths.items())
            ]
    return out


def _read_suite(bench_dir: Path) -> dict:
    file = bench_dir / "suite.yaml"
    if not file.is_file():
        return {}
    try:
        suite = yaml.safe_load(file.read_text(errors="replace"))
    except yaml.YAMLError as err:
        raise ValueError(f"{file} is not valid YAML: {err}") from err
    if suite is None:
        return {}
    if not isinstance(suite, dict):
        raise ValueError(f"{file} must hold a mapping (a suite), got {type(suite).__name__}")
    return suite


def read_json_object(file: Path) -> dict:
    """The JSON object in ``file``.

    Raises:
        ValueError: the file is not valid JSON or holds something other than an object; the
            message names the file.
    """
    try:
        value = json.loads(file.read_text(errors="replace"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{file} is not valid JSON (corrupt or truncated?): {err}") from err
    if not isinstance(value, dict):
        raise ValueError(f"{file} must hold a JSON object, got {type(value).__name__}")
    return value


_NUMBER_KEYS = (*SEGMENTATION_KEYS, *CLASSIFICATION_KEYS, "train_seconds", "step", "steps")
_LIST_KEYS = ("IoU", "Acc", "class_frequencies", "class_names")


def _is_number(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def read_metrics(run_dir: str | Path) -> dict | None:
    """``RUN/metrics.json`` as training writes it, checked; None when the run has none yet.

    Raises:
        ValueError: the file is corrupt, or a field has the wrong type (names the file, the key,
            what was expected and what it holds).
    """
    file = Path(run_dir) / "metrics.json"
    if not file.is_file():
        return None
    metrics = read_json_object(file)
    for key in _NUMBER_KEYS:
        if not _is_number(metrics.get(key)):
            raise ValueError(f"{file}: {key!r} must be a number or null, got {metrics[key]!r}")
    for key in _LIST_KEYS:
        value = metrics.get(key)
        if value is None:
            continue
        check = (lambda v: isinstance(v, str)) if key == "class_names" else _is_number
        if not isinstance(value, list) or not all(check(v) for v in value):
            kind = "strings" if key == "class_names" else "numbers / nulls"
            raise ValueError(f"{file}: {key!r} must be a list of {kind}, got {value!r:.80}")
    groups = metrics.get("groups")
    if groups is not None and not isinstance(groups, dict):
        raise ValueError(f"{file}: 'groups' must be an object of class lists, got {groups!r:.80}")
    return metrics


def _gate_open_fraction(run_dir: Path) -> float | None:
    from semantic_anchors.viz import load_training_log

    log = load_training_log(run_dir).get("reg/gate_open")
    return None if log is None or not len(log[1]) else float(np.mean(log[1] > 0.5))


def _nan_list(values: list | None, size: int) -> list[float]:
    if values is None:
        return [math.nan] * size
    return [math.nan if v is None else float(v) for v in values]


def _method_results(records: list[RunRecord], task: str, num_classes: int) -> dict[str, Any]:
    done = [r for r in records if r.metrics is not None]
    keys = SEGMENTATION_KEYS if task == "segmentation" else CLASSIFICATION_KEYS
    per_class_key = "IoU" if task == "segmentation" else "Acc"
    out: dict[str, Any] = {
        "seeds": [r.seed for r in done],
        "missing_seeds": [r.seed for r in records if r.metrics is None],
        "diverged": diverged_steps([(r.seed, r.path) for r in records if r.metrics is None]),
        "metrics": {k: summarize_values([r.metrics.get(k) for r in done]) for k in keys},
        "runs": {str(r.seed): run_provenance(r.path) for r in done},
        "train_minutes": summarize_values(
            [
                r.metrics["train_seconds"] / 60
                for r in done
                if r.metrics.get("train_seconds") is not None
            ]
        ),
    }
    table = np.array([_nan_list(r.metrics.get(per_class_key), num_classes) for r in done])
    if len(done):
        per_class = [summarize_values(list(table[:, c])) for c in range(num_classes)]
    else:
        per_class = [summarize_values([]) for _ in range(num_classes)]
    out["per_class"] = {
        "mean": [s["mean"] for s in per_class], "std": [s["std"] for s in per_class],
        "n": [s["n"] for s in per_class],
    }  # fmt: skip
    diags = [r.diagnostics for r in done if r.diagnostics is not None]
    out["diagnostics"] = {k: summarize_values([d.get(k) for d in diags]) for k in DIAGNOSTIC_KEYS}
    out["diagnostics_runs"] = len(diags)
    out["consistency"] = {"centres": pairwise_consistency([d["centers"] for d in diags])}
    vectors = [
        d.get("regularizer_vectors") for d in diags if d.get("regularizer_vectors") is not None
    ]
    if vectors:
        out["consistency"]["regularizer_vectors"] = pairwise_consistency(vectors)
        out["consistency"]["regularizer_vectors"]["name"] = diags[0].get(
            "regularizer_vectors_name", ""
        )
    gates = [_gate_open_fraction(r.path) for r in done]
    if any(g is not None for g in gates):
        out["gate_open"] = summarize_values(gates)
    return out


def build_results(
    bench_dir: str | Path,
    *,
    diagnostics: bool = True,
    recompute: bool = False,
    max_images: int = DEFAULT_SETTINGS["max_images"],
    samples_per_class: int = DEFAULT_SETTINGS["samples_per_class"],
    echo=None,
) -> tuple[dict[str, Any], dict[str, dict[str, list[RunRecord]]]]:
    """Everything the report shows, as a JSON-ready dict, plus the run records (with diagnostics).

    Diagnostics are computed for finished runs that have a checkpoint and cached in
    ``RUN/diagnostics.pt`` (see :func:`~semantic_anchors.bench.diagnostics.load_diagnostics`).

    Raises:
        FileNotFoundError: ``bench_dir`` does not exist or has no ``runs/``.
        ValueError: a corrupt ``suite.yaml``, ``bench.json``, ``metrics.json`` or
            ``diagnostics.pt`` (the message names the file).
    """
    bench_dir = Path(bench_dir)
    runs = discover_runs(bench_dir)
    suite = _read_suite(bench_dir)
    info_file = bench_dir / "bench.json"
    info = read_json_object(info_file) if info_file.is_file() else {}
    results: dict[str, Any] = {
        "suite": suite.get("name", bench_dir.name),
        "description": suite.get("description", ""),
        "seeds": suite.get("seeds"),
        "invocations": info.get("invocations", []),
        "datasets": {},
    }
    selection_file = bench_dir / "tune" / "selection.json"
    if selection_file.is_file():  # a tuned suite: what each grid trial scored on the held-out part
        results["tuning"] = read_json_object(selection_file)
    for dataset, methods in runs.items():
        records = [r for rs in methods.values() for r in rs]
        first = next((r.metrics for r in records if r.metrics is not None), None)
        if first is None:
            results["datasets"][dataset] = {"methods": {}, "task": None}
            continue
        if diagnostics:
            for record in records:
                if record.metrics is None:
                    continue
                if echo is not None and not (record.path / "diagnostics.pt").is_file():
                    echo(f"diagnostics of {record.dataset}/{record.method}/seed{record.seed} ...")
                record.diagnostics = load_diagnostics(
                    record.path, recompute=recompute, max_images=max_images,
                    samples_per_class=samples_per_class,
                )  # fmt: skip
        task = "segmentation" if "mIoU" in first else "classification"
        keys = (SEGMENTATION_KEYS if task == "segmentation" else CLASSIFICATION_KEYS)[:4]
        class_names = list(first.get("class_names") or [])
        recipe = suite.get("datasets", {}).get(dataset, {}).get("recipe")
        results["datasets"][dataset] = {
            "task": task,
            "recipe": recipe,
            "primary": "mIoU" if task == "segmentation" else "top1",
            "per_class_key": "IoU" if task == "segmentation" else "Acc",
            "class_names": class_names,
            "class_frequencies": list(first.get("class_frequencies") or [1.0] * len(class_names)),
            "groups": first.get("groups") or {},
            "steps": first.get("steps"),
            "methods": {
                method: _method_results(rs, task, len(class_names))
                for method, rs in methods.items()
            },
        }
        suite_methods = suite.get("methods") or {}
        default = next(iter(methods), None)
        for method, rs in methods.items():
            base = (suite_methods.get(method) or {}).get("baseline") or default
            if base == method or base not in methods:
                continue
            vs = paired_differences(rs, methods[base], keys)
            vs["baseline"] = base
            results["datasets"][dataset]["methods"][method]["vs_baseline"] = vs
    results["code"] = code_summary([
        run for ds in results["datasets"].values() for m in ds["methods"].values()
        for run in m.get("runs", {}).values()
    ])  # fmt: skip
    return results, runs
