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

import re
import shlex
from collections.abc import Callable
from pathlib import Path

import yaml

from semantic_anchors.bench._processes import execute_all
from semantic_anchors.bench.lock import bench_lock
from semantic_anchors.bench.reuse import RunIndex, config_key
from semantic_anchors.bench.specs import (
    RunResult,
    RunSpec,
    cpu_cores,
    record_invocation,
    summarize,
)
from semantic_anchors.bench.suite import RUN_REFERENCE, Suite, evaluate_expression, split_derived
from semantic_anchors.bench.tuning import (
    expand_tuning_runs,
    select_trials,
    tuning_run_dir,
    write_selection,
)
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


def _waves(
    todo: list[tuple[RunSpec, list[str], str]], aliases: dict[str, str] | None = None
) -> list[list[tuple[RunSpec, list[str], str]]]:
    """Runs grouped so that a run's ``after`` runs are in an earlier group (or finished); an
    ``after`` run that is a copy of another (``aliases``: copy -> original) waits for that one."""
    aliases = aliases or {}
    pending = {spec.key for spec, _, _ in todo}
    waves = []
    while todo:
        ready = [t for t in todo if not any(aliases.get(k, k) in pending for k in t[0].after)]
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
    reuse_from: tuple[str | Path, ...] = (),
) -> list[RunResult]:
    """Train every run of ``suite`` that is not finished yet, ``jobs`` at a time.

    A run whose resolved config (seed included) equals that of a finished run in the bench
    folder or in a ``reuse_from`` folder is not trained again: its folder becomes a hard-linked
    copy of that run (status ``reused``, see :mod:`semantic_anchors.bench.reuse`); identical
    runs within one plan are trained once.

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
        reuse_from: other bench folders whose finished runs may be reused.

    Returns:
        One :class:`RunResult` per run, in suite order.

    Raises:
        ValueError / FileNotFoundError: a bad recipe, override or ``${...}`` expression.
        BenchBusy: another bench process is training in ``out_dir``.
    """
    echo = echo or print
    jobs = cpu_cores() if jobs is None else int(jobs)
    if jobs < 1:
        raise ValueError(f"jobs: expected an int >= 1, received {jobs}")
    out_dir = Path(out_dir)
    if not dry_run:
        with bench_lock(out_dir):  # two benches in one folder would train the same runs
            return _run_suite(suite, out_dir, jobs, dry_run, echo, reuse_from)
    return _run_suite(suite, out_dir, jobs, dry_run, echo, reuse_from)


def _run_suite(
    suite: Suite, out_dir: Path, jobs: int, dry_run: bool, echo: Callable[[str], None],
    reuse_from: tuple[str | Path, ...],
) -> list[RunResult]:  # fmt: skip
    index = RunIndex([*reuse_from, *([out_dir] if out_dir.is_dir() else [])])
    tuning: list[RunResult] = []
    chosen: dict[tuple[str, str], int] = {}
    if suite.tune is not None:
        tuning = _run_tuning(suite, out_dir, jobs, dry_run, echo, index)
        selection = select_trials(suite, out_dir)
        if not dry_run:
            write_selection(selection, out_dir, suite)
        for dataset, methods in selection.items():
            for method, info in methods.items():
                if info["chosen"] is not None:
                    chosen[(dataset, method)] = info["chosen"]
                    label = info["trials"][info["chosen"]]["label"]
                    score = info["trials"][info["chosen"]]["mean"]
                    echo(f"tuned {dataset}/{method}: {label} (held-out {info['metric']} "
                         f"{score:.2f})")  # fmt: skip
    return tuning + _run_main(suite, out_dir, jobs, dry_run, echo, chosen, index)


def _run_tuning(
    suite: Suite, out_dir: Path, jobs: int, dry_run: bool, echo: Callable[[str], None],
    index: RunIndex,
) -> list[RunResult]:  # fmt: skip
    """The tuning runs of a suite: trained now (or planned), finished ones skipped."""
    specs = expand_tuning_runs(suite, out_dir)
    results: dict[str, RunResult] = {}
    todo, copies = _plan(specs, results, dry_run, index)
    jobs = max(1, min(jobs, len(todo)))
    threads = max(1, cpu_cores() // jobs)
    assert suite.tune is not None
    echo(
        f"suite {suite.name!r}, tuning: {len(specs)} runs ({len(suite.datasets)} datasets x "
        f"{len(suite.tuned_methods)} tuned methods x "
        f"{len(suite.methods[suite.tuned_methods[0]].grid)} trials x {len(suite.tune.seeds)} "
        f"seed(s), {suite.tune.holdout:g} of the training data held out), "
        f"{len(specs) - len(todo) - len(copies)} finished before, {len(todo)} to run"
        + _reuse_note(results, copies)
    )
    _warn_stale(results, echo)
    if dry_run:
        for _, args, _ in todo:
            echo("  " + shlex.join(["semantic-anchors", *args]))
    elif todo:
        execute_all(f"{suite.name} (tuning)", todo, jobs, threads, results)
    _finish_copies(copies, results, index, dry_run)
    return [results[s.key] for s in specs]


Todo = list[tuple[RunSpec, list[str], str]]


def _plan(
    specs: list[RunSpec], results: dict[str, RunResult], dry_run: bool, index: RunIndex
) -> tuple[Todo, list[tuple[RunSpec, RunSpec, str]]]:
    """Resolve every run. Finished ones go to ``results`` as skipped, new ones with the config
    of a finished run as reused; returns the runs to train and ``(copy, original, key)`` for the
    new runs identical to one planned here (made copies once the original has finished)."""
    todo: Todo = []
    copies: list[tuple[RunSpec, RunSpec, str]] = []
    planned: dict[str, RunSpec] = {}
    for spec in specs:
        overrides, config = resolve_overrides(spec)
        state = run_state(spec.run_dir)
        if state == "done":
            stale = _differences(spec.run_dir, config)
            results[spec.key] = RunResult(spec, "skipped", stale=stale)
            continue
        key = config_key(config)
        if state == "new":
            source = index.find(key, spec.run_dir)
            if source is not None:
                if not dry_run:
                    index.materialize(source, spec.run_dir, key)
                results[spec.key] = RunResult(spec, "reused", command=f"reuse {source}")
                continue
            if key in planned:
                copies.append((spec, planned[key], key))
                if dry_run:
                    results[spec.key] = RunResult(
                        spec, "reused", command=f"reuse {planned[key].key}"
                    )
                continue
        planned.setdefault(key, spec)
        args = train_command(spec, overrides, resume=state == "resume")
        status = "resumed" if state == "resume" else "trained"
        todo.append((spec, args, status))
        if dry_run:
            cmd = shlex.join(["semantic-anchors", *args])
            results[spec.key] = RunResult(spec, "planned", command=cmd)
    return todo, copies


def _reuse_note(results: dict[str, RunResult], copies: list) -> str:
    reused = sum(r.status == "reused" for r in results.values()) + len(copies)
    return f", {reused} reused (a finished run with the same config)" if reused else ""


def _finish_copies(
    copies: list[tuple[RunSpec, RunSpec, str]], results: dict[str, RunResult], index: RunIndex,
    dry_run: bool,
) -> None:  # fmt: skip
    """Index what was trained; make each identical run whose original has ended a copy of it
    (removed from ``copies``; the rest wait for a later wave)."""
    for result in results.values():
        if result.status in ("trained", "resumed"):
            index.add(result.spec.run_dir)
    if dry_run:
        return
    for item in list(copies):
        spec, original, key = item
        if original.key not in results:
            continue  # its original runs in a later wave
        copies.remove(item)
        if (original.run_dir / "metrics.json").is_file():
            index.materialize(original.run_dir, spec.run_dir, key)
            results[spec.key] = RunResult(spec, "reused", command=f"reuse {original.run_dir}")
        else:
            why = f"the identical run {original.key} did not finish"
            results[spec.key] = RunResult(spec, "failed", error_tail=why)


def _warn_stale(results: dict[str, RunResult], echo: Callable[[str], None]) -> None:
    for result in results.values():
        if result.stale:
            echo(
                f"warning: {result.spec.run_dir} finished with a different config than the suite "
                f"now gives ({'; '.join(result.stale[:4])}); delete the folder to retrain it"
            )


def _run_main(
    suite: Suite, out_dir: Path, jobs: int, dry_run: bool, echo: Callable[[str], None],
    chosen: dict[tuple[str, str], int], index: RunIndex,
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
    todo, copies = _plan([s for s in specs if s.key not in waiting], results, dry_run, index)
    jobs = max(1, min(jobs, len(todo)))  # fewer runs than jobs: give each more threads
    threads = max(1, cpu_cores() // jobs)
    skipped = sum(r.status == "skipped" for r in results.values())
    echo(
        f"suite {suite.name!r}: {len(specs)} runs ({len(suite.datasets)} datasets x "
        f"{len(suite.methods)} methods x {len(suite.seeds)} seeds), {skipped} finished before, "
        f"{len(todo)} to run with {jobs} parallel job(s) x {threads} thread(s)"
        + _reuse_note(results, copies)
        + (f", {len(waiting)} waiting for their tuning" if waiting else "")
    )
    _warn_stale(results, echo)
    if dry_run:
        for _, args, _ in todo:
            echo("  " + shlex.join(["semantic-anchors", *args]))
        return [results[s.key] for s in specs]
    aliases = {copy.key: original.key for copy, original, _ in copies}
    for wave in _waves(todo, aliases):  # two stages: the runs trained from others come after them
        execute_all(suite.name, wave, jobs, threads, results)
        _finish_copies(copies, results, index, dry_run)
    return [results[s.key] for s in specs]
