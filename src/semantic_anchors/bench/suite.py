"""Benchmark suites: datasets x methods x seeds, read from YAML and checked before anything runs.

A suite file (``semantic_anchors/recipes/suites/NAME.yaml`` or any path)::

    name: quick                         # optional, default: the file name
    description: what the suite shows   # optional
    seeds: [0, 1]
    set: [trainer.max_steps=60]         # optional, applied to every run
    datasets:
      synthlt: {recipe: synthlt-fcn-quick, set: ["data.options={num_images: 200}"]}
    methods:
      none: {set: [regularizer.name=none]}
      sar: {set: [regularizer.name=sar], baseline: none}   # baseline: optional

A method's ``baseline`` names the method the report compares it with seed by seed (default: the
first method of the suite).

Overrides are ``--set`` strings of the training config. A value written ``${expression}`` is
derived from the run's resolved config, e.g.
``loss.drw_start_step=${int(0.8 * trainer.max_steps)}``, so a suite follows a recipe whose step
count is retuned (see :func:`evaluate_expression`).

A suite with a ``tune`` section gives its methods a ``grid`` of values and chooses, per dataset
and method, the trial with the best metric on a held-out part of the training data
(``data.holdout``, :mod:`semantic_anchors.data.holdout`); the reported runs then train with the
chosen values. Every tuned method needs the same number of trials (the tuning budget)::

    tune:
      seeds: [0]        # the seeds of the tuning runs (default: the suite's first seed)
      holdout: 0.2      # the share of the training items held out (default 0.2)
      trials: 3         # optional: the budget every grid must have
      metric: mIoU      # optional (default: mIoU for segmentation, top1 for classification)
    methods:
      car: {set: [regularizer.name=car], grid: {regularizer.lambda_intra: [0.1, 1.0, 10.0]}}
      sar: {set: [regularizer.name=sar], grid: [{regularizer.lambda_p2a: 0.01}, ...]}

A ``grid`` mapping is the product of its value lists; a list of mappings names each trial.

A dataset's overrides may name the folder of another run of the same seed as
``@run(DATASET/METHOD)``, e.g. ``model.pretrained=@run(fashion-lt/sar)``: a two-stage design
(pre-train, then train from it). The referenced dataset must be listed earlier; its runs are
trained first.

The pieces live in modules of their own, whose names are all importable from here:
:mod:`.suite_schema` (the dataclasses and section keys), :mod:`.suite_checks` (the YAML checks),
:mod:`.suite_expressions` (``${...}`` values) and :mod:`.suite_references` (``@run(...)``).
"""

from __future__ import annotations

import difflib
from pathlib import Path

import yaml

from semantic_anchors._resources import SUITES_DIR, list_yaml
from semantic_anchors.bench.suite_checks import parse_suite
from semantic_anchors.bench.suite_expressions import evaluate_expression, split_derived
from semantic_anchors.bench.suite_references import RUN_REFERENCE  # noqa: F401  (re-exported)
from semantic_anchors.bench.suite_schema import (  # noqa: F401  (the keys are re-exported)
    DATASET_KEYS,
    METHOD_KEYS,
    SUITE_KEYS,
    TUNE_KEYS,
    DatasetEntry,
    MethodEntry,
    Suite,
    TuneSpec,
    trial_label,
)

__all__ = [
    "SUITES_DIR",
    "DatasetEntry",
    "MethodEntry",
    "Suite",
    "TuneSpec",
    "evaluate_expression",
    "list_suites",
    "load_suite",
    "resolve_suite_path",
    "split_derived",
    "trial_label",
]


def list_suites() -> list[str]:
    """Names of the suites shipped in ``semantic_anchors/recipes/suites/``."""
    return list_yaml(SUITES_DIR)


def resolve_suite_path(suite: str | Path) -> Path:
    """A suite name from ``semantic_anchors/recipes/suites/`` (with or without ``.yaml``) or a YAML path.

    Raises:
        FileNotFoundError: neither exists (the message lists the shipped suites).
    """
    path = Path(suite)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    candidate = SUITES_DIR / f"{path.stem}.yaml"
    if path.parent == Path(".") and candidate.is_file():
        return candidate
    names = list_suites()
    close = difflib.get_close_matches(str(suite), names, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise FileNotFoundError(
        f"suite {str(suite)!r} is neither a YAML file nor a name in {SUITES_DIR}.{hint} "
        f"Available: {names}"
    )


def load_suite(suite: str | Path | dict) -> Suite:
    """Read and validate a suite: a name in ``semantic_anchors/recipes/suites/``, a YAML path, or a dict.

    Raises:
        FileNotFoundError: no such suite.
        ValueError: unknown keys (the message lists the valid ones), missing ``datasets`` /
            ``methods`` / ``seeds``, malformed overrides, bad seeds or names that cannot be
            folder names.

    Example:
        >>> suite = load_suite({"seeds": [0], "datasets": {"s": {"recipe": "synthlt-fcn-quick"}},
        ...                     "methods": {"sar": {"set": ["regularizer.name=sar"]}}})
        >>> suite.name, list(suite.methods), suite.seeds
        ('suite', ['sar'], [0])
    """
    if isinstance(suite, dict):
        return parse_suite(suite, "suite", "suite", None)
    path = resolve_suite_path(suite)
    with open(path) as fh:
        data = yaml.safe_load(fh)
    out = parse_suite(data, str(path), path.stem, path.parent)
    out.path = path
    return out
