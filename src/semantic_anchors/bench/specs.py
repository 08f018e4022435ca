"""What a bench runs and what became of it: :class:`RunSpec` (one training run of a suite) and
:class:`RunResult` (its outcome), shared by the runner, the tuning and the process pool."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["RunResult", "RunSpec", "cpu_cores"]


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
