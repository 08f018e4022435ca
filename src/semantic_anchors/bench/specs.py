"""What a bench runs and what became of it: :class:`RunSpec` (one training run of a suite) and
:class:`RunResult` (its outcome), shared by the runner, the tuning and the process pool."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from semantic_anchors.bench.suite import Suite


__all__ = ["RunResult", "RunSpec", "cpu_cores", "record_invocation", "summarize"]


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


def summarize(results: list[RunResult]) -> str:
    """A plain-text summary: counts, then each failure with the end of its stderr."""
    counts: dict[str, int] = {}
    for result in results:
        counts[result.status] = counts.get(result.status, 0) + 1
    order = ("trained", "resumed", "reused", "skipped", "planned", "pending", "failed")
    lines = [", ".join(f"{counts[k]} {k}" for k in order if k in counts)]
    failed = [r for r in results if r.status == "failed"]
    if failed:
        lines.append(f"{len(failed)} run(s) failed:")
        for result in failed:
            if not result.command:  # never started (every started run records its command)
                lines.append(f"  {result.spec.key}: not run: {result.error_tail}")
                continue
            last = [line for line in result.error_tail.splitlines() if line.strip()][-3:]
            from semantic_anchors.train.divergence import read_divergence  # Lightning: lazily

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
