"""Run a suite: one ``semantic-anchors train`` subprocess per (dataset, method, seed), in parallel.

Run folders are ``DIR/runs/<dataset>/<method>/seed<k>``. A run with ``metrics.json`` is finished
and skipped; one with ``checkpoints/last.ckpt`` but no ``metrics.json`` was interrupted and is
continued with ``--resume``; anything else starts fresh. So ``bench`` can be stopped and started
again at any time. Runs are ordered seed first, so an interrupted suite has whole seeds done.

A suite with a ``tune`` section first trains every grid trial of its tuned methods on the
training data less a held-out part (``DIR/tune/<dataset>/<method>/trial<i>/seed<k>``), scores
each trial on that part, writes the choice to ``DIR/tune/selection.json`` and then trains the
reported runs with the chosen values (see :func:`select_trials`).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from semantic_anchors.bench._processes import execute_all
from semantic_anchors.bench.suite import RUN_REFERENCE, Suite, evaluate_expression, split_derived
from semantic_anchors.train.divergence import read_divergence
from semantic_anchors.train.runfolder import folder_state

__all__ = [
    "RunResult",
    "RunSpec",
    "cpu_cores",
    "expand_runs",
    "expand_tuning_runs",
    "record_invocation",
    "resolve_overrides",
    "run_state",
    "run_suite",
    "select_trials",
    "summarize",
    "train_command",
    "tuning_run_dir",
]

# Keys that do not change what a run computes (data order does not depend on workers).
_IGNORED_DIFFERENCES = {"trainer.progress_bar", "data.num_workers"}


@dataclass(frozen=True)
class RunSpec:
    """One training run of a suite."""

    dataset: str
    method: str
    seed: int
    recipe: str
    overrides: tuple[str, ...]  # suite overrides in order; ``${...}`` values not yet evaluated
    run_dir: Path
    after: tuple[str, ...] = ()  # keys of the runs it is trained from (``@run(...)``)
    trial: int | None = None  # a tuning run: the index of its grid trial

    @property
    def key(self) -> str:
        if self.trial is not None:
            return f"tune:{self.dataset}/{self.method}/trial{self.trial}/seed{self.seed}"
        return f"{self.dataset}/{self.method}/seed{self.seed}"


@dataclass
class RunResult:
    """What happened to one run: ``skipped`` (finished before), ``trained``, ``resumed``,
    ``failed`` or ``planned`` (dry run)."""

    spec: RunSpec
    status: str
    seconds: float = 0.0
    returncode: int | None = None
    error_tail: str = ""
    command: str = ""
    stale: list[str] = field(default_factory=list)  # config keys that differ from the suite now


def cpu_cores() -> int:
    """CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def expand_runs(
    suite: Suite, out_dir: str | Path, chosen: dict[tuple[str, str], int] | None = None
) -> list[RunSpec]:
    """Every (dataset, method, seed) of ``suite`` with its run folder, ordered seed first.

    Overrides apply in this order: the suite's ``set``, the dataset's, the method's, then the
    chosen grid trial of a tuned method (``chosen[(dataset, method)]``, a trial index; a tuned
    method without a choice gets none). The command line's ``--set`` is part of the suite's, see
    :meth:`Suite.with_overrides`.
    """
    chosen = chosen or {}
    runs_dir = Path(out_dir) / "runs"

    def linked(items: tuple[str, ...], seed: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
        refs: list[str] = []

        def folder(match: re.Match) -> str:
            refs.append(f"{match.group(1)}/{match.group(2)}/seed{seed}")
            return str(runs_dir / match.group(1) / match.group(2) / f"seed{seed}")

        return tuple(RUN_REFERENCE.sub(folder, item) for item in items), tuple(refs)

    specs = []
    for seed in suite.seeds:
        for dataset, entry in suite.datasets.items():
            for method, method_entry in suite.methods.items():
                trial = chosen.get((dataset, method))
                extra = () if trial is None else method_entry.trial_overrides(trial)
                overrides, after = linked(
                    (*suite.overrides, *entry.overrides, *method_entry.overrides, *extra), seed
                )
                specs.append(RunSpec(
                    dataset=dataset, method=method, seed=seed, recipe=entry.recipe,
                    overrides=overrides, run_dir=runs_dir / dataset / method / f"seed{seed}",
                    after=after,
                ))  # fmt: skip
    return specs


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


def _write_selection(selection: dict, out_dir: Path, suite: Suite) -> None:
    tune_dir = out_dir / "tune"
    tune_dir.mkdir(parents=True, exist_ok=True)
    assert suite.tune is not None
    info = {
        "seeds": list(suite.tune.seeds), "holdout": suite.tune.holdout,
        "holdout_seed": suite.tune.holdout_seed, "datasets": selection,
    }  # fmt: skip
    (tune_dir / "selection.json").write_text(json.dumps(info, indent=2))


def _waves(
    todo: list[tuple[RunSpec, list[str], str]],
) -> list[list[tuple[RunSpec, list[str], str]]]:
    """Runs grouped so that a run's ``after`` runs are in an earlier group (or finished)."""
    pending = {spec.key for spec, _, _ in todo}
    waves = []
    while todo:
        ready = [t for t in todo if not any(k in pending for k in t[0].after)]
        waves.append(ready)
        pending -= {spec.key for spec, _, _ in ready}
        todo = [t for t in todo if t not in ready]
    return waves


def run_state(run_dir: str | Path) -> str:
    """``"done"`` (metrics.json), ``"resume"`` (a checkpoint, or a config of a run killed before
    its first checkpoint, which ``--resume`` restarts from step 0) or ``"new"``."""
    state = folder_state(Path(run_dir))  # one definition of a run folder's state
    return {"finished": "done", "interrupted": "resume", "started": "resume"}.get(state, "new")


def _final_overrides(spec: RunSpec, derived: list[str]) -> list[str]:
    return [*derived, f"seed={spec.seed}", "trainer.progress_bar=false"]


def resolve_overrides(spec: RunSpec) -> tuple[list[str], dict]:
    """The exact ``--set`` list of a run (``${...}`` values computed) and its resolved config.

    Raises:
        FileNotFoundError: the recipe does not exist.
        ValueError: an unknown config key, a malformed override or a bad ``${...}`` expression.
    """
    from semantic_anchors.train.config import load_config  # imports Lightning: only when running

    plain, derived = split_derived(spec.overrides)
    where = f"run {spec.key}"
    try:
        config = load_config(spec.recipe, [*plain, *_final_overrides(spec, [])])
        values = [f"{key}={evaluate_expression(expr, config)}" for key, expr in derived]
        overrides = [*plain, *_final_overrides(spec, values)]
        return overrides, load_config(spec.recipe, overrides)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from err


def train_command(spec: RunSpec, overrides: list[str], resume: bool) -> list[str]:
    """The ``semantic-anchors train`` arguments (after the program name) of a run."""
    if resume:
        return ["train", "--resume", str(spec.run_dir), "--set", *overrides]
    return ["train", spec.recipe, "--out", str(spec.run_dir), "--set", *overrides]


def _differences(run_dir: Path, expected: dict) -> list[str]:
    """Config keys in which a finished run differs from what the suite asks for now.

    A key the saved config lacks (the run was trained by a version before the key existed) counts
    as its default, which is what that version did.
    """
    from semantic_anchors.train.config import DEFAULTS  # imports Lightning: only here
    from semantic_anchors.train.runfolder import flatten_config

    try:
        saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return []
    old, new = flatten_config(saved), flatten_config(yaml.safe_load(yaml.safe_dump(expected)))
    defaults = flatten_config(yaml.safe_load(yaml.safe_dump(DEFAULTS)))
    old = {**{k: v for k, v in defaults.items() if k not in old}, **old}
    keys = sorted((set(old) | set(new)) - _IGNORED_DIFFERENCES)
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]


def run_suite(
    suite: Suite,
    out_dir: str | Path,
    *,
    jobs: int | None = None,
    dry_run: bool = False,
    echo: Callable[[str], None] | None = None,
) -> list[RunResult]:
    """Train every run of ``suite`` that is not finished yet, ``jobs`` at a time.

    Each subprocess gets ``OMP_NUM_THREADS = max(1, cores // min(jobs, runs to do))``:
    oversubscribed OpenMP threads make CPU training many times slower. A failed run leaves
    ``RUN/error.log`` (command, return code, stderr tail); the others go on. All configs are
    resolved before anything starts, so a typo in the suite fails at once.

    Args:
        suite: a loaded suite (with the command line's ``--set`` already added).
        out_dir: the bench folder.
        jobs: parallel runs (default: the CPU core count).
        dry_run: resolve and return the plan (status ``planned`` / ``skipped``), run nothing.
        echo: where plan lines go (default: print).

    Returns:
        One :class:`RunResult` per run, in suite order.

    Raises:
        ValueError / FileNotFoundError: a bad recipe, override or ``${...}`` expression.
    """
    echo = echo or print
    jobs = cpu_cores() if jobs is None else int(jobs)
    if jobs < 1:
        raise ValueError(f"jobs: expected an int >= 1, received {jobs}")
    out_dir = Path(out_dir)
    tuning: list[RunResult] = []
    chosen: dict[tuple[str, str], int] = {}
    if suite.tune is not None:
        tuning = _run_tuning(suite, out_dir, jobs, dry_run, echo)
        selection = select_trials(suite, out_dir)
        if not dry_run:
            _write_selection(selection, out_dir, suite)
        for dataset, methods in selection.items():
            for method, info in methods.items():
                if info["chosen"] is not None:
                    chosen[(dataset, method)] = info["chosen"]
                    label = info["trials"][info["chosen"]]["label"]
                    score = info["trials"][info["chosen"]]["mean"]
                    echo(f"tuned {dataset}/{method}: {label} (held-out {info['metric']} "
                         f"{score:.2f})")  # fmt: skip
    return tuning + _run_main(suite, out_dir, jobs, dry_run, echo, chosen)


def _run_tuning(
    suite: Suite, out_dir: Path, jobs: int, dry_run: bool, echo: Callable[[str], None]
) -> list[RunResult]:
    """The tuning runs of a suite: trained now (or planned), finished ones skipped."""
    specs = expand_tuning_runs(suite, out_dir)
    results: dict[str, RunResult] = {}
    todo = _plan(specs, results, dry_run)
    jobs = max(1, min(jobs, len(todo)))
    threads = max(1, cpu_cores() // jobs)
    assert suite.tune is not None
    echo(
        f"suite {suite.name!r}, tuning: {len(specs)} runs ({len(suite.datasets)} datasets x "
        f"{len(suite.tuned_methods)} tuned methods x "
        f"{len(suite.methods[suite.tuned_methods[0]].grid)} trials x {len(suite.tune.seeds)} "
        f"seed(s), {suite.tune.holdout:g} of the training data held out), "
        f"{len(specs) - len(todo)} finished before, {len(todo)} to run"
    )
    _warn_stale(results, echo)
    if dry_run:
        for _, args, _ in todo:
            echo("  " + shlex.join(["semantic-anchors", *args]))
    elif todo:
        execute_all(f"{suite.name} (tuning)", todo, jobs, threads, results)
    return [results[s.key] for s in specs]


def _plan(
    specs: list[RunSpec], results: dict[str, RunResult], dry_run: bool
) -> list[tuple[RunSpec, list[str], str]]:
    """Resolve every run; finished ones go to ``results`` as skipped, the rest are returned."""
    todo: list[tuple[RunSpec, list[str], str]] = []
    for spec in specs:
        overrides, config = resolve_overrides(spec)
        state = run_state(spec.run_dir)
        if state == "done":
            stale = _differences(spec.run_dir, config)
            results[spec.key] = RunResult(spec, "skipped", stale=stale)
            continue
        args = train_command(spec, overrides, resume=state == "resume")
        status = "resumed" if state == "resume" else "trained"
        todo.append((spec, args, status))
        if dry_run:
            cmd = shlex.join(["semantic-anchors", *args])
            results[spec.key] = RunResult(spec, "planned", command=cmd)
    return todo


def _warn_stale(results: dict[str, RunResult], echo: Callable[[str], None]) -> None:
    for result in results.values():
        if result.stale:
            echo(
                f"warning: {result.spec.run_dir} finished with a different config than the suite "
                f"now gives ({'; '.join(result.stale[:4])}); delete the folder to retrain it"
            )


def _run_main(
    suite: Suite, out_dir: Path, jobs: int, dry_run: bool, echo: Callable[[str], None],
    chosen: dict[tuple[str, str], int],
) -> list[RunResult]:  # fmt: skip
    """The reported runs; a tuned method whose trials are not all scored waits (``pending`` in a
    dry run, ``failed`` otherwise)."""
    specs = expand_runs(suite, out_dir, chosen)
    waiting = {
        spec.key for spec in specs
        if spec.method in suite.tuned_methods and (spec.dataset, spec.method) not in chosen
    }  # fmt: skip
    results: dict[str, RunResult] = {}
    for spec in specs:
        if spec.key in waiting:
            status = "pending" if dry_run else "failed"
            results[spec.key] = RunResult(
                spec, status, error_tail="its method's tuning runs have not all finished"
            )
    todo = _plan([s for s in specs if s.key not in waiting], results, dry_run)
    jobs = max(1, min(jobs, len(todo)))  # fewer runs than jobs: give each more threads
    threads = max(1, cpu_cores() // jobs)
    skipped = sum(r.status == "skipped" for r in results.values())
    echo(
        f"suite {suite.name!r}: {len(specs)} runs ({len(suite.datasets)} datasets x "
        f"{len(suite.methods)} methods x {len(suite.seeds)} seeds), {skipped} finished before, "
        f"{len(todo)} to run with {jobs} parallel job(s) x {threads} thread(s)"
        + (f", {len(waiting)} waiting for their tuning" if waiting else "")
    )
    _warn_stale(results, echo)
    if dry_run:
        for _, args, _ in todo:
            echo("  " + shlex.join(["semantic-anchors", *args]))
        return [results[s.key] for s in specs]
    for wave in _waves(todo):  # a two-stage suite: the runs trained from others come after them
        execute_all(suite.name, wave, jobs, threads, results)
    return [results[s.key] for s in specs]


def summarize(results: list[RunResult]) -> str:
    """A plain-text summary: counts, then each failure with the end of its stderr."""
    counts: dict[str, int] = {}
    for result in results:
        counts[result.status] = counts.get(result.status, 0) + 1
    order = ("trained", "resumed", "skipped", "planned", "pending", "failed")
    lines = [", ".join(f"{counts[k]} {k}" for k in order if k in counts)]
    failed = [r for r in results if r.status == "failed"]
    if failed:
        lines.append(f"{len(failed)} run(s) failed:")
        for result in failed:
            if not result.command:  # never started (every started run records its command)
                lines.append(f"  {result.spec.key}: not run: {result.error_tail}")
                continue
            last = [line for line in result.error_tail.splitlines() if line.strip()][-3:]
            diverged = read_divergence(result.spec.run_dir)
            if diverged:
                head = f"diverged at step {diverged['step']}"
            else:
                head = f"return code {result.returncode}"
            lines.append(f"  {result.spec.key}: {head}, {result.spec.run_dir / 'error.log'}")
            lines.extend(f"    | {line}" for line in last)
    return "\n".join(lines)


def record_invocation(suite: Suite, out_dir: str | Path, command: str) -> None:
    """Write ``DIR/suite.yaml`` (the suite as run) and append ``command`` to ``DIR/bench.json``.

    Raises:
        ValueError: ``out_dir`` already holds a bench of another suite.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    suite_file = out_dir / "suite.yaml"
    if suite_file.is_file():
        previous = (yaml.safe_load(suite_file.read_text()) or {}).get("name")
        if previous not in (None, suite.name):
            raise ValueError(
                f"--out {out_dir} holds a bench of suite {previous!r}, not {suite.name!r}; "
                f"choose another --out"
            )
    suite_file.write_text(yaml.safe_dump(suite.to_dict(), sort_keys=False))
    info_file = out_dir / "bench.json"
    info: dict[str, Any] = {"suite": suite.name, "invocations": []}
    if info_file.is_file():
        info = json.loads(info_file.read_text())
    info["suite"] = suite.name
    if suite.path is not None:
        info["suite_file"] = str(suite.path)
    info.setdefault("invocations", []).append(
        {"time": time.strftime("%Y-%m-%d %H:%M:%S"), "command": command}
    )
    info_file.write_text(json.dumps(info, indent=2))
