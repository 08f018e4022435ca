"""A suite's ``tune`` section: the grid trials of its tuned methods, trained on the training data
less a held-out part (``DIR/tune/<dataset>/<method>/trial<i>/seed<k>``), scored on that part, and
the choice written to ``DIR/tune/selection.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from semantic_anchors.bench.specs import RunSpec
from semantic_anchors.bench.suite import Suite

__all__ = ["expand_tuning_runs", "select_trials", "tuning_run_dir", "write_selection"]


def tuning_run_dir(out_dir: str | Path, dataset: str, method: str, trial: int, seed: int) -> Path:
    """The folder of one tuning run: ``DIR/tune/<dataset>/<method>/trial<i>/seed<k>``."""
    return Path(out_dir) / "tune" / dataset / method / f"trial{trial}" / f"seed{seed}"


def expand_tuning_runs(suite: Suite, out_dir: str | Path) -> list[RunSpec]:
    """The tuning runs of ``suite`` (none without a ``tune`` section), ordered seed first:
    every trial of every tuned method on every dataset, validated on the held-out part."""
    if suite.tune is None:
        return []
    specs = []
    for seed in suite.tune.seeds:
        for dataset, entry in suite.datasets.items():
            for method in suite.tuned_methods:
                method_entry = suite.methods[method]
                for trial in range(len(method_entry.grid)):
                    overrides = (
                        *suite.overrides, *entry.overrides, *method_entry.overrides,
                        *method_entry.trial_overrides(trial), *suite.tune.overrides(),
                    )  # fmt: skip
                    specs.append(RunSpec(
                        dataset=dataset, method=method, seed=seed, recipe=entry.recipe,
                        overrides=overrides, trial=trial,
                        run_dir=tuning_run_dir(out_dir, dataset, method, trial, seed),
                    ))  # fmt: skip
    return specs


def select_trials(suite: Suite, out_dir: str | Path) -> dict[str, dict[str, dict[str, Any]]]:
    """Score every grid trial on the held-out part and choose, per dataset and method.

    A trial's score is the mean over the tuning seeds of its metric (``tune.metric``, default
    mIoU for segmentation and top1 for classification) on the held-out part; the best one is
    chosen, the first of the grid on a tie. A (dataset, method) with a tuning run that has not
    finished has ``chosen: None``.

    Returns:
        ``{dataset: {method: {"metric", "chosen", "trials": [{"set", "label", "scores",
        "mean"}]}}}`` (``scores``: seed -> value, ``None`` for an unfinished run).

    Raises:
        ValueError: a finished run's ``metrics.json`` lacks the metric (names it and the file).
    """
    from semantic_anchors.bench.results import read_metrics
    from semantic_anchors.bench.suite import trial_label

    out: dict[str, dict[str, dict[str, Any]]] = {}
    if suite.tune is None:
        return out
    for dataset in suite.datasets:
        out[dataset] = {}
        for method in suite.tuned_methods:
            grid = suite.methods[method].grid
            metric = suite.tune.metric
            trials = []
            for index, trial in enumerate(grid):
                scores: dict[int, float | None] = {}
                for seed in suite.tune.seeds:
                    run_dir = tuning_run_dir(out_dir, dataset, method, index, seed)
                    metrics = read_metrics(run_dir)
                    if metrics is None:
                        scores[seed] = None
                        continue
                    name = metric or ("mIoU" if "mIoU" in metrics else "top1")
                    if not isinstance(metrics.get(name), (int, float)):
                        raise ValueError(
                            f"{run_dir / 'metrics.json'} has no metric {name!r} to tune on "
                            f"(tune.metric; it has {sorted(k for k in metrics if k[:1].isalpha())})"
                        )
                    metric = name
                    scores[seed] = float(metrics[name])
                done = [v for v in scores.values() if v is not None]
                trials.append({
                    "set": dict(trial), "label": trial_label(trial), "scores": scores,
                    "mean": sum(done) / len(done) if len(done) == len(scores) else None,
                })  # fmt: skip
            complete = all(t["mean"] is not None for t in trials)
            best = (
                max(range(len(trials)), key=lambda i: (trials[i]["mean"], -i)) if complete else None
            )
            out[dataset][method] = {"metric": metric, "chosen": best, "trials": trials}
    return out


def write_selection(selection: dict, out_dir: Path, suite: Suite) -> None:
    tune_dir = out_dir / "tune"
    tune_dir.mkdir(parents=True, exist_ok=True)
    assert suite.tune is not None
    info = {
        "seeds": list(suite.tune.seeds), "holdout": suite.tune.holdout,
        "holdout_seed": suite.tune.holdout_seed, "datasets": selection,
    }  # fmt: skip
    (tune_dir / "selection.json").write_text(json.dumps(info, indent=2))
