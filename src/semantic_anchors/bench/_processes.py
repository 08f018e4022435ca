"""The processes of a bench: one ``semantic-anchors train`` subprocess per run, a progress bar."""

from __future__ import annotations

import concurrent.futures as cf
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from semantic_anchors.bench.specs import RunResult

if TYPE_CHECKING:
    from semantic_anchors.bench.specs import RunSpec

__all__ = ["ERROR_TAIL_LINES", "execute_all"]

ERROR_TAIL_LINES = 60


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class _Executor:
    """Starts run subprocesses and remembers them, so an interrupt can stop exactly those."""

    def __init__(self, threads: int) -> None:
        self.env = {
            **os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
            "PYTHONUNBUFFERED": "1",
        }  # fmt: skip
        self.running: dict[str, subprocess.Popen] = {}
        self.lock = threading.Lock()
        self.stopping = False

    def __call__(self, spec: RunSpec, args: list[str], status: str) -> RunResult:
        run_dir = spec.run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "error.log").unlink(missing_ok=True)
        readable = shlex.join(["semantic-anchors", *args])
        with open(run_dir / "command.txt", "a") as fh:
            fh.write(readable + "\n")
        argv = [sys.executable, "-m", "semantic_anchors.cli", *args]
        start = time.perf_counter()
        with open(run_dir / "train.log", "a") as out, open(run_dir / "stderr.log", "a") as err:
            for fh in (out, err):
                fh.write(f"== {time.strftime('%Y-%m-%d %H:%M:%S')} {readable}\n")
                fh.flush()
            with self.lock:
                if self.stopping:
                    return RunResult(spec, "failed", 0.0, None, "interrupted", readable)
                proc = subprocess.Popen(argv, stdout=out, stderr=err, env=self.env)
                self.running[spec.key] = proc
            returncode = proc.wait()
            with self.lock:
                self.running.pop(spec.key, None)
        seconds = time.perf_counter() - start
        if returncode == 0 and (run_dir / "metrics.json").is_file():
            return RunResult(spec, status, seconds, 0, "", readable)
        tail = _tail(run_dir / "stderr.log", ERROR_TAIL_LINES)
        why = (
            "stopped by the bench (interrupted); run it again to resume\n" if self.stopping else ""
        )
        (run_dir / "error.log").write_text(
            f"{why}command: {readable}\nreturn code: {returncode}\n"
            f"last {ERROR_TAIL_LINES} lines of stderr ({run_dir / 'stderr.log'}):\n{tail}\n"
        )
        return RunResult(spec, "failed", seconds, returncode, tail, readable)

    def stop(self) -> None:
        with self.lock:
            self.stopping = True
            procs = list(self.running.values())
        for proc in procs:
            proc.terminate()  # SIGTERM: the run saves a checkpoint at the end of its step
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()


class _Display:
    """A rich progress bar over runs (plain lines when rich is absent)."""

    def __init__(self, title: str, total: int) -> None:
        self.title, self.total, self.done, self.progress = title, total, 0, None
        try:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )

            self.progress = Progress(
                SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
                MofNCompleteColumn(), TextColumn("runs"), TimeElapsedColumn(),
                TextColumn("{task.fields[running]}"),
            )  # fmt: skip
            self.task = self.progress.add_task(title, total=total, running="")
        except ModuleNotFoundError:
            pass

    def __enter__(self) -> _Display:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()

    def print(self, text: str) -> None:
        if self.progress is not None:
            self.progress.console.print(text, highlight=False)
        else:
            print(text, flush=True)

    def advance(self, running: list[str]) -> None:
        self.done += 1
        self.update(running)

    def update(self, running: list[str]) -> None:
        if self.progress is not None:
            label = f"running: {', '.join(running)}" if running else ""
            self.progress.update(self.task, completed=self.done, running=label)


_MARK = {"trained": "[green]done[/]", "resumed": "[green]resumed[/]", "failed": "[red]FAILED[/]"}


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def execute_all(
    name: str, todo: list, jobs: int, threads: int, results: dict[str, RunResult]
) -> None:
    """Run ``todo`` (``(spec, args, status)`` items) ``jobs`` at a time; fill ``results``.

    Ctrl-C or SIGTERM stops the subprocesses started here (and only those), then re-raises.
    """
    executor = _Executor(threads)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_interrupt) if main_thread else None
    try:
        with _Display(f"bench {name}", len(todo)) as display, cf.ThreadPoolExecutor(jobs) as pool:
            pending = {pool.submit(executor, *item) for item in todo}
            try:
                while pending:
                    finished, pending = cf.wait(
                        pending, timeout=0.5, return_when=cf.FIRST_COMPLETED
                    )
                    for future in finished:
                        result = future.result()
                        results[result.spec.key] = result
                        display.print(_finished_line(result))
                        display.advance(sorted(executor.running))
                    display.update(sorted(executor.running))
            except BaseException:
                for future in pending:
                    future.cancel()
                executor.stop()
                raise
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


def _finished_line(result: RunResult) -> str:
    mark = _MARK.get(result.status, result.status)
    line = f"{mark} {result.spec.key} in {result.seconds:.0f} s"
    if result.status == "failed":
        line += f" (return code {result.returncode}; see {result.spec.run_dir / 'error.log'})"
    return line
