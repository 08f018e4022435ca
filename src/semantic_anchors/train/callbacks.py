"""Callbacks that keep work safe: periodic checkpoints, signals, pauses, and true progress totals.

A checkpoint is written (atomically, to ``checkpoints/last.ckpt``) after every validation, every
``trainer.checkpoint_every`` steps, every ``trainer.checkpoint_minutes`` minutes of training, at a
pause (``trainer.stop_at_step``) and when SIGINT / SIGTERM arrives. A checkpoint taken at the end
of step ``k`` holds exactly the state a straight run has there, so resuming from it reproduces the
straight run bitwise.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
from pathlib import Path

import lightning as L
import torch

__all__ = ["RunCheckpointer", "TrainingInterrupted", "TrainingPaused", "step_progress_bar"]


class TrainingInterrupted(Exception):  # noqa: N818 - it is an event, not a fault
    """Training stopped on a signal after saving a checkpoint."""

    def __init__(self, signum: int, step: int, checkpoint: Path) -> None:
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        super().__init__(f"{signal.Signals(signum).name} at step {step}; saved {checkpoint}")


class TrainingPaused(Exception):  # noqa: N818
    """Training reached ``trainer.stop_at_step`` and saved a checkpoint (resume to go on)."""

    def __init__(self, step: int, checkpoint: Path) -> None:
        self.step, self.checkpoint = step, checkpoint
        super().__init__(f"paused at step {step}; saved {checkpoint}")


class RunCheckpointer(L.Callback):
    """Writes ``last.ckpt`` (and optionally ``best.ckpt``) so a killed run loses at most an interval.

    Args:
        folder: the ``checkpoints/`` folder.
        val_every: the validation interval in steps (a validation step saves after validating).
        every_steps: also save every this many steps (``None``: only at validations).
        every_minutes: also save when this many minutes passed since the last save (``None``: off).
        stop_at_step: pause here: save, then raise :class:`TrainingPaused`.
        monitor: the validation metric of ``best.ckpt`` (``None``: no best checkpoint).
        handle_signals: turn SIGINT / SIGTERM into a checkpoint at the end of the current step
            (a second SIGINT exits at once).
    """

    def __init__(
        self,
        folder: Path,
        *,
        val_every: int,
        every_steps: int | None = None,
        every_minutes: float | None = None,
        stop_at_step: int | None = None,
        monitor: str | None = None,
        handle_signals: bool = True,
    ) -> None:
        self.folder = Path(folder)
        self.val_every, self.every_steps = int(val_every), every_steps
        self.every_seconds = None if every_minutes is None else 60.0 * float(every_minutes)
        self.stop_at_step, self.monitor = stop_at_step, monitor
        self.handle_signals = handle_signals
        self.best: float | None = None
        self.save_seconds: list[float] = []  # wall time of each save (the cost of a checkpoint)
        self._signal: int | None = None
        self._previous: dict[int, object] = {}
        self._last_save = time.monotonic()

    @property
    def last(self) -> Path:
        return self.folder / "last.ckpt"

    # ------------------------------------------------------------------ signals
    def _on_signal(self, signum: int, frame) -> None:
        if self._signal is not None and signum == signal.SIGINT:
            print(
                f"\nsecond interrupt: exiting now; the last checkpoint is {self.last}",
                file=sys.stderr, flush=True,
            )  # fmt: skip
            os._exit(128 + signum)
        self._signal = signum
        print(
            f"\n{signal.Signals(signum).name} received: saving a checkpoint at the end of this step "
            "(Ctrl-C again to exit at once)",
            file=sys.stderr, flush=True,
        )  # fmt: skip

    def on_fit_start(self, trainer, pl_module) -> None:
        self._last_save = time.monotonic()
        if self.handle_signals and threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._on_signal)

    def _restore_signals(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def on_fit_end(self, trainer, pl_module) -> None:
        self._restore_signals()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._restore_signals()

    # ------------------------------------------------------------------ saving
    def _save(self, trainer, path: Path | None = None) -> None:
        start = time.perf_counter()
        trainer.save_checkpoint(path or self.last)
        self.save_seconds.append(time.perf_counter() - start)
        self._last_save = time.monotonic()

    def _agreed(self, trainer, *flags: bool) -> list[bool]:
        """Under DDP every rank must take the same decision (a signal may reach one rank only)."""
        if trainer.world_size <= 1:
            return list(flags)
        local = torch.tensor([float(f) for f in flags], device=trainer.strategy.root_device)
        return [bool(v) for v in trainer.strategy.reduce(local, reduce_op="max").tolist()]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        timed = (
            self.every_seconds is not None
            and time.monotonic() - self._last_save >= self.every_seconds
        )
        signalled, timed = self._agreed(trainer, self._signal is not None, timed)
        if signalled:
            # Save now, skipping this step's validation: a preempted job has little time left.
            self._save(trainer)
            raise TrainingInterrupted(self._signal or signal.SIGTERM, step, self.last)
        if self.stop_at_step is not None and step >= self.stop_at_step:
            self._save(trainer)
            raise TrainingPaused(step, self.last)
        if step >= trainer.max_steps:
            return  # the end of training is saved by the caller, after the final validation
        if step % self.val_every == 0:
            return  # saved after this step's validation, with its metrics
        if timed or (self.every_steps and step % self.every_steps == 0):
            self._save(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        self._save(trainer)
        if self.monitor is None:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None or not math.isfinite(float(value)):
            return
        if self.best is None or float(value) > self.best:
            self.best = float(value)
            self._save(trainer, self.folder / "best.ckpt")

    def state_dict(self) -> dict:
        return {"best": self.best}

    def load_state_dict(self, state_dict: dict) -> None:
        self.best = state_dict.get("best")


def step_progress_bar(max_steps: int) -> L.Callback:
    """A progress bar over optimizer steps: ``step / max_steps``, also after a resume."""
    try:
        from lightning.pytorch.callbacks import RichProgressBar as Base
    except (ImportError, ModuleNotFoundError):  # rich is optional
        from lightning.pytorch.callbacks import TQDMProgressBar as Base

    class StepProgressBar(Base):
        """Step-based training: show steps, not Lightning's (meaningless) epoch counter."""

        def _get_train_description(self, current_epoch: int) -> str:
            return "train"

        @property
        def total_train_batches(self) -> int:
            return max_steps

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            # Lightning counts batches of this invocation; a resumed run counts on from its step.
            super().on_train_batch_end(trainer, pl_module, outputs, batch, trainer.global_step - 1)

        def get_metrics(self, trainer, pl_module) -> dict:
            items = super().get_metrics(trainer, pl_module)
            items.pop("v_num", None)
            return items

    if Base.__name__ == "RichProgressBar":
        return StepProgressBar(leave=True)
    return StepProgressBar()
