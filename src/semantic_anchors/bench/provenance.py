"""What a bench report records of where each number came from: per run its training command,
the code version that trained it (``RUN/code_version.json``), torch's thread count and, for a run
reused from another folder, that folder; per report the code versions over all its runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from semantic_anchors.bench.reuse import reused_from

__all__ = ["code_summary", "describe_code", "diverged_steps", "run_provenance"]


def _read_list(file: Path) -> list:
    try:
        value = json.loads(file.read_text()) if file.is_file() else []
    except (OSError, ValueError):
        return []
    return value if isinstance(value, list) else []


def run_provenance(run_dir: str | Path) -> dict[str, Any]:
    """``{"command", "commit", "dirty", "package", "threads", "cpu", "reused_from"}`` of one run
    folder; a field the folder does not record (a run trained before it was recorded) is None.
    The code version is the last start's (a resumed run: the one that finished it)."""
    run_dir = Path(run_dir)
    reuse = reused_from(run_dir)
    command = None
    file = run_dir / "command.txt"
    if file.is_file():
        lines = [line for line in file.read_text(errors="replace").splitlines() if line.strip()]
        command = lines[-1] if lines else None
    versions = [v for v in _read_list(run_dir / "code_version.json") if isinstance(v, dict)]
    last = versions[-1] if versions else {}
    commits = {(v.get("commit"), v.get("dirty")) for v in versions}
    return {
        "command": command,
        "commit": last.get("commit"),
        "dirty": last.get("dirty") if len(commits) <= 1 else True,  # mixed versions: not clean
        "package": last.get("package"),
        "threads": last.get("threads"),
        "cpu": last.get("cpu"),  # bit-equal results are expected on the same kind of CPU only
        "reused_from": reuse["source"] if reuse else None,
    }


def code_summary(provenance: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The distinct ``(commit, dirty)`` of a report's runs with how many runs each trained,
    most runs first; runs that recorded no version count under ``commit: None``."""
    counts: dict[tuple, int] = {}
    for p in provenance:
        key = (p.get("commit"), p.get("dirty"), p.get("package"))
        counts[key] = counts.get(key, 0) + 1
    ordered = sorted(counts.items(), key=lambda kv: -kv[1])
    return [{"commit": c, "dirty": d, "package": pkg, "runs": n} for (c, d, pkg), n in ordered]


def describe_code(summary: list[dict[str, Any]]) -> str:
    """One line for a report's header: ``commit 1a2b3c4d (30 runs)`` / ``... dirty`` / unknown."""
    if not summary:
        return "no finished run"
    parts = []
    for entry in summary:
        if entry["commit"] is None:
            text = "unrecorded code version (a run from before versions were recorded)"
            if entry.get("package"):
                text = f"package {entry['package']} outside a git checkout"
        else:
            text = f"commit {entry['commit'][:10]}" + (" with uncommitted changes" if entry[
                "dirty"] else "")  # fmt: skip
        parts.append(f"{text} ({entry['runs']} run{'s' if entry['runs'] != 1 else ''})")
    return "; ".join(parts)


def diverged_steps(unfinished: list[tuple[int, Path]]) -> dict[str, Any]:
    """``{seed: step}`` of the unfinished runs (``(seed, folder)``) that stopped on a divergence
    (``None``: the step is unknown), from ``RUN/diverged.json``."""
    from semantic_anchors.train.divergence import read_divergence

    out = {}
    for seed, path in unfinished:
        record = read_divergence(path)
        if record is not None:
            out[str(seed)] = record.get("step")
    return out
