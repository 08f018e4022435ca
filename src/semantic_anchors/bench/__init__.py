"""Benchmarks: suites of datasets x methods x seeds, run in parallel, reported with diagnostics.

``semantic-anchors bench SUITE`` = :func:`load_suite` -> :func:`run_suite` -> :func:`write_report`
(a suite with a ``tune`` section first runs :func:`expand_tuning_runs` and :func:`select_trials`).
Only the training subprocesses and the diagnostics import Lightning (through
``semantic_anchors.train``); reading suites and writing reports from cached results do not.
"""

from semantic_anchors.bench.diagnostics import compute_diagnostics, load_diagnostics
from semantic_anchors.bench.report import write_report
from semantic_anchors.bench.results import build_results, discover_runs, pairwise_consistency
from semantic_anchors.bench.runner import (
    RunResult,
    RunSpec,
    expand_runs,
    expand_tuning_runs,
    record_invocation,
    run_state,
    run_suite,
    select_trials,
    summarize,
)
from semantic_anchors.bench.suite import Suite, TuneSpec, list_suites, load_suite

__all__ = [
    "RunResult",
    "RunSpec",
    "Suite",
    "TuneSpec",
    "build_results",
    "compute_diagnostics",
    "discover_runs",
    "expand_runs",
    "expand_tuning_runs",
    "list_suites",
    "load_diagnostics",
    "load_suite",
    "pairwise_consistency",
    "record_invocation",
    "run_state",
    "run_suite",
    "select_trials",
    "summarize",
    "write_report",
]
