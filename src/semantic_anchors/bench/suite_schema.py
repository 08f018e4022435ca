"""What a validated suite is made of: the keys of each YAML section and the dataclasses.

:class:`Suite` holds its :class:`DatasetEntry` and :class:`MethodEntry` items and, when it is
tuned, its :class:`TuneSpec`; ``*_KEYS`` are the keys each section of the YAML form may have (the
form is described in :mod:`semantic_anchors.bench.suite`, the checks are
:mod:`semantic_anchors.bench.suite_checks`).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "DATASET_KEYS",
    "METHOD_KEYS",
    "SUITE_KEYS",
    "TUNE_KEYS",
    "DatasetEntry",
    "MethodEntry",
    "Suite",
    "TuneSpec",
    "check_overrides",
    "trial_label",
]

SUITE_KEYS = ("name", "description", "seeds", "set", "datasets", "methods", "tune")
DATASET_KEYS = ("recipe", "set", "description")
METHOD_KEYS = ("set", "description", "baseline", "grid")
TUNE_KEYS = ("seeds", "holdout", "holdout_seed", "trials", "metric")


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
        out.overrides = (*self.overrides, *check_overrides(list(extra), "--set"))
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


def check_overrides(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, list):
        raise ValueError(f"{where}: expected a list of 'key.sub=value' strings, received {value!r}")
    for item in value:
        if not isinstance(item, str) or "=" not in item or not item.split("=", 1)[0].strip():
            raise ValueError(f"{where}: expected 'key.sub=value' strings, received {item!r}")
    return tuple(value)
