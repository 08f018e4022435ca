"""Which code produced a result: the package version and, in a git checkout, the commit and
whether the tree had uncommitted changes ("dirty"). Recorded in every run folder, so a number can
be traced to the code that gave it."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["CODE_VERSION_FILE", "code_version", "cpu_kind", "record_code_version"]

CODE_VERSION_FILE = "code_version.json"


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def code_version() -> dict[str, Any]:
    """``{"package", "commit", "dirty", "torch", "python"}``; ``commit`` and ``dirty`` are
    ``None`` where the package is not inside a git checkout (an installed wheel). ``dirty`` means
    uncommitted changes to tracked files under ``src/`` (the code; docs and tests do not change
    what a run computes)."""
    import torch

    from semantic_anchors import __version__

    here = Path(__file__).resolve().parent
    top = _git(["rev-parse", "--show-toplevel"], here)
    commit = dirty = None
    if top is not None and (Path(top) / "src" / "semantic_anchors").resolve() == here:
        commit = _git(["rev-parse", "HEAD"], here)
        status = _git(["status", "--porcelain", "--untracked-files=no", "--", str(here)], here)
        dirty = None if status is None else bool(status)
    return {
        "package": __version__,
        "commit": commit,
        "dirty": dirty,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def cpu_kind() -> str:
    """The processor and the kernels torch dispatches to on it, e.g. ``"Intel(R) Xeon(R)
    Processor (AVX512)"``. Float results are bitwise repeatable only on the same kind: another
    instruction set (or another MKL / oneDNN code path) rounds sums in another order."""
    import torch

    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model} ({torch.backends.cpu.get_cpu_capability()})"


def record_code_version(folder: Path, step: int) -> dict[str, Any]:
    """Append this invocation's code version (with the step it starts from, torch's thread
    count and the CPU kind) to ``FOLDER/code_version.json``, a list with one entry per start or
    resume."""
    path = Path(folder) / CODE_VERSION_FILE
    try:
        history = json.loads(path.read_text()) if path.is_file() else []
    except ValueError:
        history = []
    import torch

    entry = {
        **code_version(),
        "threads": torch.get_num_threads(),  # intra-op threads: reductions may depend on them
        "cpu": cpu_kind(),  # so may the instruction set the kernels use
        "step": int(step),
        "time": _dt.datetime.now().isoformat(timespec="seconds"),
    }
    history = [*(history if isinstance(history, list) else []), entry]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(history, indent=2))
    os.replace(tmp, path)
    return entry
