"""Callbacks that keep work safe: periodic checkpoints, signals, pauses, and true progress totals.

A checkpoint is written (atomically, to ``checkpoints/last.ckpt``) after every validation, every
``trainer.checkpoint_every`` steps, every ``trainer.checkpoint_minutes`` minutes of training, at a
pause (``trainer.stop_at_step``) and when SIGINT / SIGTERM arrives. A checkpoint taken at the end
of step ``k`` holds exactly the state a straight run has there, so resuming from it reproduces the
straight run bitwise.

Under DDP (one node or many) the ranks must take every decision together: a signal may reach one
rank only and clocks differ, so those two local facts are combined across ranks, with one small
collective every ``agree_every`` steps and at the last step, steps that every rank picks from the
step counter alone. A signal thus stops all ranks within ``agree_every`` steps, and no rank ever
waits in a collective that the others do not enter. Everything else (validations, step intervals,
pauses, the end) is a function of the step and needs no agreement.
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

from semantic_anchors.train.divergence import check_divergence

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
        agree_every: under DDP, the ranks combine their signal flags and save clocks every this
            many steps (and at the last step): a signal or a due ``every_minutes`` save takes
            effect within this many steps. One process decides at every step.

    Raises:
        ValueError: ``agree_every`` is not a positive integer.
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
        agree_every: int = 10,
    ) -> None:
        if isinstance(agree_every, bool) or not isinstance(agree_every, int) or agree_every < 1:
            raise ValueError(f"agree_every must be a positive integer, got {agree_every!r}")
        self.agree_every = agree_every
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
        self.saved_step: int | None = None  # the step of the newest checkpoint written

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

    def _handles_signals(self) -> bool:
        return self.handle_signals and threading.current_thread() is threading.main_thread()

    def on_fit_start(self, trainer, pl_module) -> None:
        self._last_save = time.monotonic()
        if self._handles_signals():  # the handlers to restore when fitting ends
            self._previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def on_train_start(self, trainer, pl_module) -> None:
        # Installed here, replacing the SIGTERM handler that Lightning (2.6) sets after
        # on_fit_start: that one broadcasts from inside the handler and stops the signalled rank
        # alone at the end of its step, so under DDP the ranks' collectives no longer pair up and
        # every rank hangs.
        if self._handles_signals():
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, self._on_signal)

    def _restore_signals(self) -> None:
        for signum, handler in self._previous.items():
            if handler is not None:  # None: set outside Python, cannot be set back from it
                signal.signal(signum, handler)
        self._previous.clear()

    def on_fit_end(self, trainer, pl_module) -> None:
        self._restore_signals()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._restore_signals()

    # ------------------------------------------------------------------ saving
    def _check(self, trainer, *, scan_state: bool) -> None:
        """The non-finite policy's check (a sync; under DDP a collective: only at steps every rank
        picks alike): raises :class:`~semantic_anchors.train.divergence.TrainingDiverged`."""
        module = getattr(trainer, "lightning_module", None)
        if hasattr(module, "nonfinite"):
            check_divergence(module, trainer, trainer.global_step, scan_state=scan_state)

    def _save(self, trainer, path: Path | None = None) -> None:
        self._check(trainer, scan_state=True)  # never a checkpoint from a non-finite state
        start = time.perf_counter()
        trainer.save_checkpoint(path or self.last)
        self.save_seconds.append(time.perf_counter() - start)
        self._last_save = time.monotonic()
        self.saved_step = trainer.global_step

    def _agreement_step(self, trainer, step: int) -> bool:
        """Whether the ranks combine their local facts at ``step`` (a function of the step only)."""
        return step % self.agree_every == 0 or step >= trainer.max_steps

    def _signal_and_timer(self, trainer, step: int) -> tuple[int | None, bool]:
        """The signal to stop on (``None``: go on) and whether a timed save is due, alike on all
        ranks: under DDP the maximum over ranks, decided at agreement steps only."""
        timed = (
            self.every_seconds is not None
            and time.monotonic() - self._last_save >= self.every_seconds
        )
        if trainer.world_size <= 1:
            return self._signal, timed
        if not self._agreement_step(trainer, step):
            return None, False
        local = torch.tensor(  # (2,): the signal number (0: none), a timed save is due
            [float(self._signal or 0), float(timed)], device=trainer.strategy.root_device
        )
        signum, timed_any = trainer.strategy.reduce(local, reduce_op="max").tolist()
        return (int(signum) or None), bool(timed_any)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        signum, timed = self._signal_and_timer(trainer, step)
        if signum is not None:
            # Save now, skipping this step's validation: a preempted job has little time left.
            self._save(trainer)
            raise TrainingInterrupted(signum, step, self.last)
        if self.stop_at_step is not None and step >= self.stop_at_step:
            self._save(trainer)
            raise TrainingPaused(step, self.last)
        logged = hasattr(pl_module, "is_log_step") and pl_module.is_log_step(step - 1)
        if step >= trainer.max_steps or step % self.val_every == 0 or logged:
            self._check(trainer, scan_state=False)  # before validating: a named divergence
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

        shown_loss: float | None = None

        def get_metrics(self, trainer, pl_module) -> dict:
            items = super().get_metrics(trainer, pl_module)
            items.pop("v_num", None)
            # The loss is read back from the device (a sync) only on the steps that are logged.
            loss = getattr(pl_module, "progress_loss", None)
            # The step that just ended; the same test as the module's (which logged it).
            step = trainer.global_step - 1
            if hasattr(pl_module, "is_log_step"):
                logged = pl_module.is_log_step(step)
            else:
                every = max(1, int(getattr(trainer, "log_every_n_steps", 1) or 1))
                logged = (step + 1) % every == 0
            if loss is not None and logged:
                self.shown_loss = float(loss)
            if self.shown_loss is not None:
                items["loss"] = round(self.shown_loss, 4)
            return items

    if Base.__name__ == "RichProgressBar":
        return StepProgressBar(leave=True)
    return StepProgressBar()
