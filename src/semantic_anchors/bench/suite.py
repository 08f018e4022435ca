"""Benchmark suites: datasets x methods x seeds, read from YAML and checked before anything runs.

A suite file (``semantic_anchors/recipes/bench/NAME.yaml`` or any path)::

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
"""

from __future__ import annotations

import ast
import copy
import difflib
import itertools
import json
import operator
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from semantic_anchors._resources import SUITES_DIR, list_yaml

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


SUITE_KEYS = ("name", "description", "seeds", "set", "datasets", "methods", "tune")
DATASET_KEYS = ("recipe", "set", "description")
METHOD_KEYS = ("set", "description", "baseline", "grid")
TUNE_KEYS = ("seeds", "holdout", "holdout_seed", "trials", "metric")
_TUNE_RESERVED = ("seed", "data.holdout", "data.holdout_seed", "data.val_split", "name")
_CONFIG_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
_DERIVED = re.compile(r"^\$\{(.+)\}$")
RUN_REFERENCE = re.compile(r"@run\(([^/()\s]+)/([^/()\s]+)\)")
"""``@run(DATASET/METHOD)`` in an override: that run's folder (same seed)."""


@dataclass(frozen=True)
class DatasetEntry:
    """One dataset of a suite: a training recipe plus overrides."""

    recipe: str
    overrides: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class MethodEntry:
    """One method of a suite: overrides applied on top of each dataset's recipe."""

    overrides: tuple[str, ...] = ()
    description: str = ""
    baseline: str | None = None  # the method the report compares it with, seed by seed
    grid: tuple[tuple[tuple[str, Any], ...], ...] = ()  # trials: (config key, value) pairs each

    def trial_overrides(self, index: int) -> tuple[str, ...]:
        """The ``--set`` strings of trial ``index`` of the grid."""
        return tuple(f"{key}={json.dumps(value)}" for key, value in self.grid[index])


@dataclass(frozen=True)
class TuneSpec:
    """A suite's ``tune`` section: how grid trials are run and chosen."""

    seeds: tuple[int, ...]
    holdout: float = 0.2
    holdout_seed: int = 0
    trials: int | None = None
    metric: str | None = None

    def overrides(self) -> tuple[str, ...]:
        """What a tuning run adds to its overrides: the held-out part as validation set."""
        return (f"data.holdout={self.holdout}", f"data.holdout_seed={self.holdout_seed}")


def trial_label(trial: tuple[tuple[str, Any], ...]) -> str:
    """``lambda_p2a=0.1`` (the last part of each key) for a report table."""
    return ", ".join(f"{key.rsplit('.', 1)[-1]}={value}" for key, value in trial) or "(defaults)"


@dataclass
class Suite:
    """A validated suite (see the module docstring for the YAML form)."""

    name: str
    datasets: dict[str, DatasetEntry]
    methods: dict[str, MethodEntry]
    seeds: list[int]
    overrides: tuple[str, ...] = ()
    description: str = ""
    tune: TuneSpec | None = None
    path: Path | None = field(default=None, compare=False)

    @property
    def tuned_methods(self) -> list[str]:
        """The methods with a grid, in suite order."""
        return [key for key, method in self.methods.items() if method.grid]

    def with_overrides(self, extra: list[str] | tuple[str, ...]) -> Suite:
        """A copy whose global overrides end with ``extra`` (e.g. the command line's ``--set``)."""
        out = copy.copy(self)
        out.overrides = (*self.overrides, *_check_overrides(list(extra), "--set"))
        return out

    def to_dict(self) -> dict[str, Any]:
        """The YAML form (what ``DIR/suite.yaml`` of a bench folder holds)."""
        tune = {}
        if self.tune is not None:
            tune = {"tune": {
                "seeds": list(self.tune.seeds), "holdout": self.tune.holdout,
                "holdout_seed": self.tune.holdout_seed,
                **({"trials": self.tune.trials} if self.tune.trials is not None else {}),
                **({"metric": self.tune.metric} if self.tune.metric else {}),
            }}  # fmt: skip
        return {
            "name": self.name,
            "description": self.description,
            "seeds": list(self.seeds),
            "set": list(self.overrides),
            "datasets": {
                key: {"recipe": d.recipe, "set": list(d.overrides), "description": d.description}
                for key, d in self.datasets.items()
            },
            "methods": {
                key: {
                    "set": list(m.overrides),
                    "description": m.description,
                    **({"baseline": m.baseline} if m.baseline else {}),
                    **({"grid": [dict(trial) for trial in m.grid]} if m.grid else {}),
                }  # fmt: skip
                for key, m in self.methods.items()
            },
            **tune,
        }


def list_suites() -> list[str]:
    """Names of the suites shipped in ``semantic_anchors/recipes/bench/``."""
    return list_yaml(SUITES_DIR)


def resolve_suite_path(suite: str | Path) -> Path:
    """A suite name from ``semantic_anchors/recipes/bench/`` (with or without ``.yaml``) or a YAML path.

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


def _check_overrides(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, list):
        raise ValueError(f"{where}: expected a list of 'key.sub=value' strings, received {value!r}")
    for item in value:
        if not isinstance(item, str) or "=" not in item or not item.split("=", 1)[0].strip():
            raise ValueError(f"{where}: expected 'key.sub=value' strings, received {item!r}")
    return tuple(value)


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


def _parse(data: Any, source: str, default_name: str, base_dir: Path | None) -> Suite:
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
            recipe, _check_overrides(entry.get("set"), f"{where}.set"),
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
            _check_overrides(entry.get("set"), f"{where}.set"),
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

    _check_references(datasets, methods, source)
    tune = _check_tune(data.get("tune"), methods, datasets, list(seeds), source)
    name = data.get("name", default_name)
    if not isinstance(name, str) or not _SAFE_NAME.match(name):
        raise ValueError(f"{source}: name: expected a folder-safe string, received {name!r}")
    return Suite(
        name=name, datasets=datasets, methods=methods, seeds=list(seeds),
        overrides=_check_overrides(data.get("set"), f"{source}: set"),
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


def _check_references(datasets: dict, methods: dict, source: str) -> None:
    """``@run(D/M)`` only in dataset overrides, naming a method and an earlier dataset."""
    order = list(datasets)
    for key, method in methods.items():
        if any(RUN_REFERENCE.search(item) for item in method.overrides):
            raise ValueError(
                f"{source}: methods.{key}: @run(...) references belong in a dataset's set (they "
                "name the runs a dataset is trained from)"
            )
    for position, (key, entry) in enumerate(datasets.items()):
        for item in entry.overrides:
            for dataset, method in RUN_REFERENCE.findall(item):
                if dataset not in order[:position]:
                    raise ValueError(
                        f"{source}: datasets.{key}: @run({dataset}/{method}) must name a dataset "
                        f"listed before {key!r} ({order[:position]})"
                    )
                if method not in methods:
                    raise ValueError(
                        f"{source}: datasets.{key}: @run({dataset}/{method}) names no method of "
                        f"the suite ({list(methods)})"
                    )


def load_suite(suite: str | Path | dict) -> Suite:
    """Read and validate a suite: a name in ``semantic_anchors/recipes/bench/``, a YAML path, or a dict.

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
        return _parse(suite, "suite", "suite", None)
    path = resolve_suite_path(suite)
    with open(path) as fh:
        data = yaml.safe_load(fh)
    out = _parse(data, str(path), path.stem, path.parent)
    out.path = path
    return out


# ---------------------------------------------------------------- derived override values

_BINARY = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv,
}  # fmt: skip
_FUNCTIONS = {"int": int, "round": round, "min": min, "max": max}


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


def evaluate_expression(expression: str, config: dict) -> Any:
    """Evaluate ``expression`` with config keys as names: numbers, ``+ - * / //``, ``int``,
    ``round``, ``min``, ``max`` and dotted config keys (``trainer.max_steps``). Nothing else.

    Raises:
        ValueError: a syntax error, an unsupported construct or an unknown config key.

    Example:
        >>> evaluate_expression("int(0.8 * trainer.max_steps)", {"trainer": {"max_steps": 600}})
        480
    """
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError as err:
        raise ValueError(f"cannot parse ${{{expression}}}: {err.msg}") from err

    def walk(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            return _BINARY[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -walk(node.operand)
        if (
            isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id in _FUNCTIONS and not node.keywords
        ):  # fmt: skip
            return _FUNCTIONS[node.func.id](*(walk(arg) for arg in node.args))
        key = _dotted(node)
        if key is not None:
            value: Any = config
            for part in key.split("."):
                if not isinstance(value, dict) or part not in value:
                    raise ValueError(f"${{{expression}}}: unknown config key {key!r}")
                value = value[part]
            return value
        raise ValueError(
            f"${{{expression}}}: only numbers, + - * / //, int/round/min/max and config keys "
            f"are allowed, found {ast.dump(node)[:60]}"
        )

    return walk(tree)


def split_derived(
    overrides: list[str] | tuple[str, ...],
) -> tuple[list[str], list[tuple[str, str]]]:
    """Plain overrides and ``(key, expression)`` pairs of ``${...}`` values that are still in force
    (a later plain override of the same key wins over an earlier derived one and vice versa)."""
    last: dict[str, int] = {}
    for i, item in enumerate(overrides):
        last[item.split("=", 1)[0].strip()] = i
    plain, derived = [], []
    for i, item in enumerate(overrides):
        key, value = (part.strip() for part in item.split("=", 1))
        match = _DERIVED.match(value)
        if match is None:
            plain.append(item)
        elif last[key] == i:
            derived.append((key, match.group(1)))
    return plain, derived
