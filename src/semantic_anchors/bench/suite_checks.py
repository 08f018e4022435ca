"""Checking a suite's YAML form section by section: :func:`parse_suite` returns a :class:`Suite`.

Every error names the file (or ``suite`` for a dict), the dotted key and what was received;
unknown keys come with the valid ones and a close match.
"""

from __future__ import annotations

import difflib
import itertools
import re
from pathlib import Path
from typing import Any

from semantic_anchors.bench.suite_references import RUN_REFERENCE, check_references
from semantic_anchors.bench.suite_schema import (
    DATASET_KEYS,
    METHOD_KEYS,
    SUITE_KEYS,
    TUNE_KEYS,
    DatasetEntry,
    MethodEntry,
    Suite,
    TuneSpec,
    check_overrides,
)

__all__ = ["parse_suite"]

_TUNE_RESERVED = ("seed", "data.holdout", "data.holdout_seed", "data.val_split", "name")
_CONFIG_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def _unknown_keys(data: dict, valid: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(data) - set(valid))
    if unknown:
        hints = [
            f"{key!r} (did you mean {difflib.get_close_matches(key, valid, n=1)[0]!r}?)"
            if difflib.get_close_matches(key, valid, n=1)
            else repr(key)
            for key in unknown
        ]
        raise ValueError(f"{where}: unknown key(s) {', '.join(hints)}; valid keys: {list(valid)}")


def _check_seeds(value: Any, where: str) -> list[int]:
    """A non-empty list of distinct ints >= 0 (the suite's ``seeds``, ``tune.seeds``)."""
    if (
        not isinstance(value, list) or not value
        or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in value)
        or len(set(value)) != len(value)
    ):  # fmt: skip
        raise ValueError(
            f"{where}: expected a non-empty list of distinct ints >= 0, received {value!r}"
        )
    return value


def _check_mapping(value: Any, where: str) -> dict:
    if not isinstance(value, dict) or not value:
        raise ValueError(
            f"{where}: expected a non-empty mapping of name -> entry, received {value!r}"
        )
    for key in value:
        if not isinstance(key, str) or not _SAFE_NAME.match(key):
            raise ValueError(
                f"{where}: names become folder names and must match {_SAFE_NAME.pattern}, "
                f"received {key!r}"
            )
    return value


def parse_suite(data: Any, source: str, default_name: str, base_dir: Path | None) -> Suite:
    if not isinstance(data, dict):
        raise ValueError(f"{source}: a suite must be a YAML mapping, got {type(data).__name__}")
    _unknown_keys(data, SUITE_KEYS, source)
    for key in ("datasets", "methods", "seeds"):
        if key not in data:
            raise ValueError(
                f"{source}: missing key {key!r}; a suite needs {['datasets', 'methods', 'seeds']}"
            )
    seeds = _check_seeds(data["seeds"], f"{source}: seeds")

    datasets = {}
    for key, entry in _check_mapping(data["datasets"], f"{source}: datasets").items():
        where = f"{source}: datasets.{key}"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: expected a mapping with 'recipe', received {entry!r}")
        _unknown_keys(entry, DATASET_KEYS, where)
        recipe = entry.get("recipe")
        if not isinstance(recipe, str) or not recipe:
            raise ValueError(f"{where}: 'recipe' (a recipe name or YAML path) is required")
        if base_dir is not None and recipe.endswith((".yaml", ".yml")):
            local = base_dir / recipe
            recipe = str(local.resolve()) if local.is_file() else recipe
        datasets[key] = DatasetEntry(
            recipe, check_overrides(entry.get("set"), f"{where}.set"),
            str(entry.get("description") or ""),
        )  # fmt: skip

    methods = {}
    for key, entry in _check_mapping(data["methods"], f"{source}: methods").items():
        where = f"{source}: methods.{key}"
        entry = {} if entry is None else entry
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: expected a mapping with 'set', received {entry!r}")
        _unknown_keys(entry, METHOD_KEYS, where)
        methods[key] = MethodEntry(
            check_overrides(entry.get("set"), f"{where}.set"),
            str(entry.get("description") or ""),
            entry.get("baseline"),
            _check_grid(entry.get("grid"), f"{where}.grid"),
        )
    for key, method in methods.items():
        if method.baseline is not None and (
            method.baseline not in methods or method.baseline == key
        ):
            others = sorted(set(methods) - {key})
            raise ValueError(
                f"{source}: methods.{key}.baseline: expected another method of the suite "
                f"({others}), received {method.baseline!r}"
            )

    check_references(datasets, methods, source)
    tune = _check_tune(data.get("tune"), methods, datasets, list(seeds), source)
    name = data.get("name", default_name)
    if not isinstance(name, str) or not _SAFE_NAME.match(name):
        raise ValueError(f"{source}: name: expected a folder-safe string, received {name!r}")
    return Suite(
        name=name, datasets=datasets, methods=methods, seeds=list(seeds),
        overrides=check_overrides(data.get("set"), f"{source}: set"),
        description=str(data.get("description") or ""), tune=tune,
    )  # fmt: skip


def _check_grid(value: Any, where: str) -> tuple[tuple[tuple[str, Any], ...], ...]:
    """A method's ``grid``: ``{key: [values]}`` (their product) or ``[{key: value}, ...]``."""
    if value is None:
        return ()
    if isinstance(value, dict) and value:
        for key, values in value.items():
            if not isinstance(values, list) or not values:
                raise ValueError(
                    f"{where}.{key}: expected a non-empty list of values, received {values!r}"
                )
        keys = list(value)
        trials = [
            tuple(zip(keys, combo, strict=True)) for combo in itertools.product(*value.values())
        ]
    elif isinstance(value, list) and value and all(isinstance(t, dict) and t for t in value):
        trials = [tuple(t.items()) for t in value]
    else:
        raise ValueError(
            f"{where}: expected a mapping of config key -> list of values, or a list of "
            f"non-empty mappings (one per trial), received {value!r}"
        )
    for trial in trials:
        for key, item in trial:
            if not isinstance(key, str) or not _CONFIG_KEY.match(key):
                raise ValueError(f"{where}: {key!r} is not a dotted config key")
            if key in _TUNE_RESERVED:
                raise ValueError(
                    f"{where}: {key!r} is set by the tuning itself and cannot be a grid key"
                )
            if not (item is None or isinstance(item, (bool, int, float, str))):
                raise ValueError(
                    f"{where}: {key}: expected a number, string, bool or null, received {item!r}"
                )
    if len(set(trials)) != len(trials):
        raise ValueError(f"{where}: the grid lists a trial twice")
    return tuple(trials)


def _check_tune(
    value: Any, methods: dict[str, MethodEntry], datasets: dict, seeds: list[int], source: str
) -> TuneSpec | None:
    """The ``tune`` section, and the equal tuning budget of the grids."""
    tuned = {key: len(m.grid) for key, m in methods.items() if m.grid}
    if value is None:
        if tuned:
            raise ValueError(
                f"{source}: methods {sorted(tuned)} have a grid but the suite has no 'tune' "
                "section (it says how trials are chosen: tune: {seeds: [0], holdout: 0.2})"
            )
        return None
    where = f"{source}: tune"
    if not isinstance(value, dict):
        raise ValueError(f"{where}: expected a mapping, received {value!r}")
    _unknown_keys(value, TUNE_KEYS, where)
    if not tuned:
        raise ValueError(f"{where}: no method has a 'grid', so there is nothing to tune")
    if any(RUN_REFERENCE.search(item) for d in datasets.values() for item in d.overrides):
        raise ValueError(f"{where}: a suite with @run(...) references cannot be tuned")
    tune_seeds = _check_seeds(value.get("seeds", seeds[:1]), f"{where}.seeds")
    holdout = value.get("holdout", 0.2)
    if isinstance(holdout, bool) or not isinstance(holdout, (int, float)) or not 0 < holdout < 1:
        raise ValueError(f"{where}.holdout: expected a fraction in (0, 1), received {holdout!r}")
    holdout_seed = value.get("holdout_seed", 0)
    if isinstance(holdout_seed, bool) or not isinstance(holdout_seed, int) or holdout_seed < 0:
        raise ValueError(f"{where}.holdout_seed: expected an int >= 0, received {holdout_seed!r}")
    trials = value.get("trials")
    if trials is not None and (isinstance(trials, bool) or not isinstance(trials, int)
                               or trials < 1):  # fmt: skip
        raise ValueError(f"{where}.trials: expected an int >= 1, received {trials!r}")
    budgets = set(tuned.values()) | ({trials} if trials is not None else set())
    if len(budgets) > 1:
        listed = ", ".join(f"{key} {n}" for key, n in tuned.items())
        raise ValueError(
            f"{where}: every tuned method needs the same number of trials (an equal tuning "
            f"budget){f', tune.trials = {trials}' if trials is not None else ''}; the grids have "
            f"{listed}"
        )
    metric = value.get("metric")
    if metric is not None and (not isinstance(metric, str) or not metric):
        raise ValueError(f"{where}.metric: expected a metric name (mIoU, top1 ...), got {metric!r}")
    return TuneSpec(tuple(tune_seeds), float(holdout), holdout_seed, trials, metric)
