"""One bench at a time per bench folder: two ``bench`` processes on one folder would each start
the same unfinished runs and write into the same run folders."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["BenchBusy", "bench_lock"]

LOCK_FILE = ".bench.lock"


class BenchBusy(RuntimeError):
    """Another bench process holds the folder."""


@contextmanager
def bench_lock(out_dir: str | Path) -> Iterator[None]:
    """Hold ``DIR/.bench.lock`` (an advisory ``flock``, released when the process ends, however
    it ends) while a bench trains into ``DIR``.

    Raises:
        BenchBusy: another process holds it; the message names that process.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / LOCK_FILE, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "a process that did not say which"
            raise BenchBusy(
                f"{out_dir}: another bench is running in this folder ({holder}); wait for it or "
                "stop it (Ctrl-C keeps its finished runs), then run this command again"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
