"""Check that today's code reproduces a published bench report: re-run one recorded run with its
exact command and compare its metrics with the published ones, exactly.

A report folder (``docs/results/<suite>``) holds ``results.json`` (every seed's metrics) and
``report.md``, whose closing ``<details>`` block lists the ``semantic-anchors train`` command of
every run. :func:`reproduce_run` re-runs one of them in a scratch folder, under the machine
conditions bench gives its runs (``OMP_NUM_THREADS`` = the threads recorded in ``results.json``,
else 1: two parallel jobs on two cores), and returns the published and the new value of every
metric. Equal means bit-equal: two runs of one command on one code version agree to the last
bit, so any difference is a code (or library) change.

Command line: ``python benchmarks/reproduce.py docs/results/paper-tab5 --run synthlt/none/0``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from semantic_anchors._provenance import cpu_kind
from semantic_anchors.bench.rerender import published_commands
from semantic_anchors.bench.results import read_metrics

__all__ = ["Reproduction", "recorded_runs", "reproduce_run"]

# ``--out <bench>/runs/<dataset>/<method>/seed<N>`` in a recorded command
_RUN_DIR = re.compile(r"(?:^|/)runs/(?P<dataset>[^/\s]+)/(?P<method>[^/\s]+)/seed(?P<seed>\d+)$")


@dataclass
class Reproduction:
    """One re-run: where it came from, and published vs new value per metric."""

    report_dir: Path
    dataset: str
    method: str
    seed: int
    command: str
    threads: int
    published: dict[str, float]
    now: dict[str, float] = field(default_factory=dict)
    error: str = ""
    recorded_cpu: str | None = None  # the CPU kind the published run trained on, if recorded
    cpu: str = ""  # the CPU kind of this re-run

    @property
    def same_cpu(self) -> bool:
        """Whether the published run is known to have trained on this kind of CPU (bit-equal
        results are expected only then: another instruction set rounds float sums otherwise)."""
        return self.recorded_cpu is not None and self.recorded_cpu == self.cpu

    @property
    def equal(self) -> bool:
        return not self.error and all(self.now.get(k) == v for k, v in self.published.items())

    def record(self) -> dict:
        """The check as a published report records it (``results.json["reproduction"]``)."""
        import datetime as dt

        from semantic_anchors._provenance import code_version

        version = code_version()
        return {
            "dataset": self.dataset, "method": self.method, "seed": self.seed,
            "command": self.command, "threads": self.threads, "equal": self.equal,
            "published": self.published, "now": self.now, "error": self.error,
            "commit": version["commit"], "dirty": version["dirty"],
            "recorded_cpu": self.recorded_cpu, "cpu": self.cpu,
            "date": dt.date.today().isoformat(),
        }  # fmt: skip

    def lines(self) -> list[str]:
        """A readable account: one line per metric, then the verdict."""
        head = f"{self.report_dir} {self.dataset}/{self.method}/seed{self.seed}"
        out = [f"{head} (OMP_NUM_THREADS={self.threads})", f"  $ {self.command}"]
        if self.error:
            return [*out, f"  FAILED: {self.error}"]
        for key, old in self.published.items():
            new = self.now.get(key)
            mark = "=" if new == old else "!="
            shown = "missing" if new is None else f"{new:.6f}"
            out.append(f"  {key:>10}: published {old:.6f} {mark} now {shown}")
        out.append("  REPRODUCED (bit-equal)" if self.equal else "  DIFFERS from the published run")
        if not self.equal and not self.same_cpu:
            out.append(
                f"  (published on {self.recorded_cpu or 'an unrecorded kind of CPU'}, re-run on "
                f"{self.cpu}: bit-equality is expected on the same kind only)"
            )
        return out


def recorded_runs(report_dir: str | Path) -> dict[tuple[str, str, int], str]:
    """``(dataset, method, seed) -> command`` of every run a published report lists."""
    report = Path(report_dir) / "report.md"
    if not report.is_file():
        raise FileNotFoundError(f"{report}: no report.md (is {report_dir} a published report?)")
    runs: dict[tuple[str, str, int], str] = {}
    for line in published_commands(report):  # the report's own list, as re-rendering reads it
        if not line.startswith("semantic-anchors train "):
            continue
        args = shlex.split(line)
        if "--out" not in args:
            continue
        match = _RUN_DIR.search(args[args.index("--out") + 1])
        if match:
            key = (match["dataset"], match["method"], int(match["seed"]))
            runs[key] = line  # a resumed run lists a later line: its last command wins
    return runs


def _from_results(results: dict) -> dict[tuple[str, str, int], dict]:
    """The provenance ``results.json`` records per run (command, threads, CPU kind, ...) of the
    runs with a command (reports written since runs record it); empty for older reports."""
    runs = {}
    for dataset, entry in results.get("datasets", {}).items():
        for method, m in entry.get("methods", {}).items():
            for seed, p in (m.get("runs") or {}).items():
                if p.get("command"):
                    runs[(dataset, method, int(seed))] = p
    return runs


def _published(results: dict, dataset: str, method: str, seed: int) -> dict[str, float]:
    try:
        entry = results["datasets"][dataset]["methods"][method]
    except KeyError as err:
        raise KeyError(f"results.json has no {dataset}/{method}") from err
    if seed not in entry["seeds"]:
        raise KeyError(f"results.json has no seed {seed} of {dataset}/{method}")
    index = entry["seeds"].index(seed)
    out = {}
    for key, summary in entry["metrics"].items():
        if summary["n"] == len(entry["seeds"]):  # no missing value: values align with seeds
            out[key] = summary["values"][index]
    return out


def reproduce_run(
    report_dir: str | Path,
    dataset: str | None = None,
    method: str | None = None,
    seed: int | None = None,
    *,
    workdir: str | Path | None = None,
    threads: int | None = None,
) -> Reproduction:
    """Re-run one recorded run of ``report_dir`` and compare it with the published metrics.

    Without ``dataset`` / ``method`` / ``seed`` the first recorded run whose command needs no
    other run folder (a stage-1 run) is taken. Runs that start from another run's folder (stage
    2) cannot be re-run alone and raise ``ValueError``.
    """
    report_dir = Path(report_dir)
    results = json.loads((report_dir / "results.json").read_text())
    recorded = _from_results(results)
    runs = {key: p["command"] for key, p in recorded.items()} or recorded_runs(report_dir)
    if not runs:
        raise ValueError(f"{report_dir}/report.md lists no training command")
    wanted = [
        k
        for k in runs
        if (dataset is None or k[0] == dataset)
        and (method is None or k[1] == method)
        and (seed is None or k[2] == seed)
    ]
    standalone = [k for k in wanted if "/runs/" not in runs[k].split("--set", 1)[-1]]
    if not wanted:
        raise ValueError(
            f"{report_dir}: no recorded run matches {dataset}/{method}/{seed}; "
            f"it lists {', '.join(f'{d}/{m}/{s}' for d, m, s in sorted(runs))}"
        )
    if not standalone:
        raise ValueError(f"{report_dir}: {wanted[0]} starts from another run's folder")
    key = standalone[0]
    command = runs[key]
    provenance = recorded.get(key, {})
    threads = int(threads or provenance.get("threads") or 1)
    rep = Reproduction(
        report_dir, *key, command, threads, _published(results, *key),
        recorded_cpu=provenance.get("cpu"), cpu=cpu_kind(),
    )  # fmt: skip

    args = shlex.split(command)[1:]
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        out = Path(tmp) / "run"
        args[args.index("--out") + 1] = str(out)
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        done = subprocess.run(
            [sys.executable, "-m", "semantic_anchors.cli", *args],
            env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        metrics = out / "metrics.json"
        if done.returncode != 0 or not metrics.is_file():
            tail = "\n".join(done.stderr.strip().splitlines()[-15:])
            rep.error = f"exit status {done.returncode}\n{tail}"
            return rep
        final = read_metrics(out)
        rep.now = {k: float(final[k]) for k in rep.published if final.get(k) is not None}
    return rep
