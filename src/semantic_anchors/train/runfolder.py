"""A run folder has one writer and an explicit state; changes made on resume are recorded.

States (:func:`folder_state`):

* ``"new"``: the folder does not exist or holds no ``config.yaml``;
* ``"started"``: ``config.yaml`` but no checkpoint yet (a run killed before its first one);
* ``"interrupted"``: a checkpoint but no ``metrics.json`` (killed, signalled or paused);
* ``"finished"``: ``metrics.json`` was written at the end of training.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "FREE_ON_RESUME",
    "RunFolderBusy",
    "RunLock",
    "config_changes",
    "ensure_not_busy",
    "flatten_config",
    "folder_state",
    "is_global_zero_process",
    "record_changes",
]

LOCK_FILE = ".lock"
CHANGES_FILE = "changes.yaml"

# Settings that do not change the training trajectory (data order and augmentation are a function
# of (seed, step), whatever the workers or the validation schedule): free to change on resume.
FREE_ON_RESUME = (
    "description",
    "trainer.stop_at_step",
    "trainer.val_every",
    "trainer.log_every",
    "trainer.progress_bar",
    "trainer.limit_val_batches",
    "trainer.checkpoint_every",
    "trainer.checkpoint_minutes",
    "trainer.agree_every",
    "trainer.save_best",
    "trainer.keep_checkpoints",
    "trainer.on_nonfinite",
    "trainer.max_skip_fraction",
    "trainer.threads",
    "data.num_workers",
    "data.val_batch_size",
    "eval.",
)
# Changes the schedule from the current step on, but is how a run is extended: allowed, recorded.
EXTENDS_RUN = ("trainer.max_steps",)


class RunFolderBusy(FileExistsError):
    """Another live process holds the run folder's lock (the folder is taken, as an existing file
    would be)."""


def is_global_zero_process() -> bool:
    """Whether this process is (or will be) global rank 0 of its job, from the launch environment.

    Lightning's DDP launcher starts the other local ranks as new processes with ``LOCAL_RANK`` set;
    torchrun and SLURM set ``RANK`` / ``SLURM_PROCID`` and ``NODE_RANK``.
    """
    for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK"):
        if int(os.environ.get(name, "0") or 0) != 0:
            return False
    return not (os.environ.get("SLURM_NTASKS") and int(os.environ.get("SLURM_PROCID", "0")) != 0)


def folder_state(path: Path) -> str:
    """``"new"``, ``"started"``, ``"interrupted"`` or ``"finished"`` (see the module docstring)."""
    path = Path(path)
    if (path / "metrics.json").is_file():
        return "finished"
    folder = path / "checkpoints"
    if (folder / "last.ckpt").is_file() or any(folder.glob("last-*.ckpt")):
        return "interrupted"
    if (path / "config.yaml").is_file():
        return "started"
    return "new"


class RunLock:
    """An exclusive ``fcntl`` lock on ``DIR/.lock`` that names its holder.

    The operating system releases the lock when the holding process dies (even by ``kill -9``), so
    a stale lock file never blocks. Use as a context manager.

    Raises:
        RunFolderBusy: another live process holds the lock (the message names its PID, host,
            start time and command).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._fh = None

    def acquire(self) -> RunLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / LOCK_FILE
        fh = open(path, "a+")  # noqa: SIM115 - held for the lifetime of the lock
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = _describe_holder(fh.read())
            fh.close()
            raise RunFolderBusy(
                f"{self.folder} is in use by {holder}; wait for it to end or stop it "
                f"(a lock of a process that died is released by the system)"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({
            "pid": os.getpid(), "host": socket.gethostname(),
            "started": _dt.datetime.now().isoformat(timespec="seconds"),
            "command": " ".join(["semantic-anchors", *sys.argv[1:]])[:500],
        }))  # fmt: skip
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def ensure_not_busy(folder: Path) -> None:
    """Raise :class:`RunFolderBusy` if a live process holds ``folder``'s lock (creates nothing).

    Checked before the folder's state, so a second command on a folder in use names the holder.
    """
    path = Path(folder) / LOCK_FILE
    if not path.is_file():
        return
    with open(path) as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunFolderBusy(
                f"{folder} is in use by {_describe_holder(fh.read())}; wait for it to end or "
                "stop it (a lock of a process that died is released by the system)"
            ) from None
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _describe_holder(text: str) -> str:
    try:
        info = json.loads(text)
        return f"PID {info['pid']} on {info['host']} (started {info['started']}: {info['command']})"
    except (ValueError, KeyError, TypeError):
        return "another process (its lock file names no holder)"


def flatten_config(config: Any, prefix: str = "") -> dict[str, Any]:
    """``{"trainer.max_steps": 1000, ...}``: nested sections as dotted keys; ``options`` and empty
    mappings stay whole values."""
    if not isinstance(config, dict):
        return {prefix: config}
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and key != "options" and value:
            out.update(flatten_config(value, name))
        else:
            out[name] = value
    return out


def config_changes(saved: dict, new: dict) -> list[dict[str, Any]]:
    """The keys whose values differ between two resolved configs.

    Returns:
        ``[{"key", "old", "new", "kind"}]`` where ``kind`` is ``"free"`` (does not change the
        trajectory), ``"extends"`` (``trainer.max_steps``) or ``"trajectory"``.
    """
    old_flat, new_flat = flatten_config(saved), flatten_config(new)
    changes = []
    for key in sorted(set(old_flat) | set(new_flat)):
        old, value = old_flat.get(key), new_flat.get(key)
        if old == value:
            continue
        if any(key == f or (f.endswith(".") and key.startswith(f)) for f in FREE_ON_RESUME):
            kind = "free"
        elif key in EXTENDS_RUN:
            kind = "extends"
        else:
            kind = "trajectory"
        changes.append({"key": key, "old": old, "new": value, "kind": kind})
    return changes


def record_changes(folder: Path, step: int, changes: list[dict[str, Any]]) -> None:
    """Append the changes made on a resume, with the step they take effect at, to
    ``DIR/changes.yaml`` (``config.yaml`` keeps the config the run was started with)."""
    if not changes:
        return
    path = Path(folder) / CHANGES_FILE
    history = yaml.safe_load(path.read_text()) if path.is_file() else None
    history = history if isinstance(history, list) else []
    when = _dt.datetime.now().isoformat(timespec="seconds")
    history.append({"step": int(step), "time": when, "changes": changes})
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump(history, sort_keys=False))
    os.replace(tmp, path)
