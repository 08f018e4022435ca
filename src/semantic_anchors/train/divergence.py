"""One policy for non-finite values: a diverging run stops (or skips the step) and never poisons a
checkpoint.

Divergence is a non-finite loss part (the main loss, the auxiliary head, each ``loss_*`` a
regularizer reports), a non-finite gradient (a gradient norm that is not finite) or a non-finite
tensor in the state a checkpoint would hold (weights, buffers, optimizer state). Regularizers add
their own guard: none takes a non-finite value into its state (EMA anchors, prototypes), see
:func:`semantic_anchors.regularizers.base.finite_rows`.

``trainer.on_nonfinite``:

* ``stop`` (default): each step folds its finiteness into a device-side flag (no host sync); the
  flag is read where the loop syncs anyway (logged steps, checkpoint and validation steps) and
  before every checkpoint, which also scans the state it would write. Divergence raises
  :class:`TrainingDiverged`: no checkpoint is written from the bad state, so the newest one in
  ``checkpoints/`` is the last finite state.
* ``skip``: every step syncs once to decide; a step with a non-finite loss part or gradient
  keeps the weights, the optimizer state and every buffer (BN statistics, SAR's semantic anchors)
  as they were before it. More than ``trainer.max_skip_fraction * trainer.max_steps`` skipped
  steps stop the run as ``stop`` would.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "DIVERGED_FILE",
    "NonFiniteTracker",
    "TrainingDiverged",
    "check_divergence",
    "describe_divergence",
    "guard_step",
    "nonfinite_state",
    "read_divergence",
    "snapshot_buffers",
    "write_divergence",
]

DIVERGED_FILE = "diverged.json"


class TrainingDiverged(Exception):  # noqa: N818 - it is an event of training, not an API misuse
    """Training stopped because a loss part, a gradient or the state became non-finite.

    Attributes:
        step: the first step seen non-finite (``None``: only the state scan saw it).
        checked_at: the step of the check that saw it; ``last_clean``: the last check that did not.
        parts: what was non-finite (``"ce"``, ``"reg.loss_p2a"``, ``"gradient"``, ``"state: ..."``).
        checkpoint: the newest checkpoint kept (finite by construction), or ``None``.
        checkpoint_step: its step.
        skipped: steps skipped under ``on_nonfinite: skip`` before the stop.
    """

    def __init__(
        self,
        *,
        step: int | None,
        checked_at: int,
        last_clean: int,
        parts: list[str],
        skipped: int = 0,
        reason: str = "",
    ) -> None:
        self.step, self.checked_at, self.last_clean = step, checked_at, last_clean
        self.parts, self.skipped, self.reason = list(parts), skipped, reason
        self.checkpoint: Path | None = None
        self.checkpoint_step: int | None = None
        self.run_dir: Path | None = None
        self.lr: float | None = None
        super().__init__(self.message())

    def window(self) -> str:
        if self.step is not None:
            return f"at step {self.step} (seen by the check at step {self.checked_at})"
        return f"between step {self.last_clean} and step {self.checked_at}"

    def resume_command(self) -> str | None:
        if self.run_dir is None:
            return None
        lr = f" --set optimizer.lr={self.lr / 10:g}" if self.lr else ""
        return f"semantic-anchors train --resume {self.run_dir} --allow-change{lr}"

    def message(self) -> str:
        what = ", ".join(self.parts) or "the training state"
        text = f"training diverged {self.window()}: non-finite {what}"
        if self.reason:
            text += f" ({self.reason})"
        if self.skipped:
            text += f"; {self.skipped} step(s) had been skipped before"
        if self.checkpoint is not None:
            text += (
                f". The last finite checkpoint is kept: {self.checkpoint} (step "
                f"{self.checkpoint_step}); resume from it with a lower learning rate: "
                f"{self.resume_command()}"
            )
        elif self.run_dir is not None:
            text += (
                ". No checkpoint was written before it; start again with a lower learning rate: "
                f"{self.resume_command()} (restarts from step 0)"
            )
        return text

    def __str__(self) -> str:
        return self.message()

    def record(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "checked_at": self.checked_at,
            "last_clean_check": self.last_clean,
            "parts": self.parts,
            "skipped": self.skipped,
            "checkpoint": None if self.checkpoint is None else str(self.checkpoint),
            "checkpoint_step": self.checkpoint_step,
            "message": self.message(),
        }


def write_divergence(run_dir: Path, err: TrainingDiverged) -> None:
    """``RUN/diverged.json``: what a bench report shows as "diverged at step N"."""
    tmp = Path(run_dir) / f".{DIVERGED_FILE}.tmp"
    tmp.write_text(json.dumps(err.record(), indent=2))
    os.replace(tmp, Path(run_dir) / DIVERGED_FILE)


def describe_divergence(err, out_dir: Path, config: dict, checkpointer, rank_zero: bool) -> None:
    """Complete a divergence with the run folder, the checkpoint kept and the resume command, and
    record it in ``RUN/diverged.json`` (what a bench report shows)."""
    err.run_dir, err.lr = out_dir, float(config["optimizer"]["lr"])
    from semantic_anchors.train.checkpoint import checkpoint_candidates

    kept = checkpoint_candidates(out_dir / "checkpoints")
    if kept:
        err.checkpoint, err.checkpoint_step = kept[0], checkpointer.saved_step
    err.args = (err.message(),)
    if rank_zero:
        write_divergence(out_dir, err)


def read_divergence(run_dir: Path) -> dict[str, Any] | None:
    """The divergence record of a run folder, or ``None`` (never diverged, or resumed since)."""
    path = Path(run_dir) / DIVERGED_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError:
        return {"step": None, "message": f"{path} is not readable"}


def nonfinite_state(module: torch.nn.Module, optimizers: list | None = None) -> list[str]:
    """Names of the floating tensors of ``module.state_dict()`` and the optimizers' state that hold
    a NaN or an infinity (one host sync for all of them)."""
    named: list[tuple[str, torch.Tensor]] = [
        (name, t) for name, t in module.state_dict().items() if t.is_floating_point()
    ]
    for k, opt in enumerate(optimizers or []):
        for i, state in enumerate(opt.state.values()):
            for key, t in state.items():
                if isinstance(t, torch.Tensor) and t.is_floating_point():
                    named.append((f"optimizer{k}.state[{i}].{key}", t))
    if not named:
        return []
    flags = torch.stack([torch.isfinite(t).all().to(named[0][1].device) for _, t in named])
    bad = (~flags).nonzero().flatten().tolist()
    return [named[i][0] for i in bad]


class NonFiniteTracker:
    """Device-side record of which loss parts were non-finite and the first step it happened.

    ``update`` and ``update_grads`` never sync; ``read`` syncs once (and, under DDP, combines the
    ranks with one collective: call it at steps every rank picks from the step counter alone).
    """

    def __init__(self) -> None:
        self.names: list[str] = []
        self.bad: torch.Tensor | None = None  # (P,) bool: part p was non-finite since the reset
        self.first: torch.Tensor | None = None  # () int64: the first bad step, -1 if none
        self.step_bad: torch.Tensor | None = None  # () bool: this step (skip mode)

    def _grow(self, names: list[str], device: torch.device) -> None:
        new = [n for n in names if n not in self.names]
        if self.bad is None:
            self.bad = torch.zeros(0, dtype=torch.bool, device=device)
            self.first = torch.full((), -1, dtype=torch.long, device=device)
        if new:
            self.names.extend(new)
            pad = torch.zeros(len(new), dtype=torch.bool, device=device)
            self.bad = torch.cat([self.bad, pad])

    def update(self, parts: dict[str, torch.Tensor], step: int) -> None:
        """Fold one step's loss parts (0-d tensors) in; ``"gradient"`` comes from
        :meth:`update_grads`."""
        if not parts:
            return
        device = next(iter(parts.values())).device
        self._grow(list(parts), device)
        finite = torch.stack([torch.isfinite(v.detach()).all() for v in parts.values()])  # (p,)
        index = torch.tensor([self.names.index(n) for n in parts], device=device)
        bad_now = torch.zeros_like(self.bad).scatter(0, index, ~finite)  # (P,), no sync
        self._fold(bad_now, step)

    def update_grads(self, params: list[torch.Tensor], step: int) -> None:
        """Fold the finiteness of the gradients of ``params`` in (one fused norm, no sync)."""
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        norms = torch._foreach_norm(grads)  # one pass over the gradients
        finite = torch.isfinite(torch.stack([n.to(grads[0].device) for n in norms])).all()
        self._grow(["gradient"], grads[0].device)
        bad_now = torch.zeros_like(self.bad)
        bad_now[self.names.index("gradient")] = ~finite
        self._fold(bad_now, step)

    def _fold(self, bad_now: torch.Tensor, step: int) -> None:
        any_now = bad_now.any()
        self.bad = self.bad | bad_now
        self.first = torch.where(any_now & (self.first < 0), torch.full_like(self.first, step),
                                 self.first)  # fmt: skip
        self.step_bad = any_now if self.step_bad is None else self.step_bad | any_now

    def begin_step(self) -> None:
        self.step_bad = None

    def read(self, strategy=None) -> tuple[int | None, list[str]]:
        """``(first bad step or None, names of the bad parts)``; one sync (and a collective under
        DDP, where the result is the union over ranks and the earliest step)."""
        if strategy is not None and getattr(strategy, "world_size", 1) > 1:
            return self._read_ranks(strategy)
        if self.bad is None:
            return None, []
        first = int(self.first)
        names = [n for n, b in zip(self.names, self.bad.tolist(), strict=True) if b]
        return (first if first >= 0 else None), names

    def _read_ranks(self, strategy) -> tuple[int | None, list[str]]:
        # Part names can differ only in order between ranks: use a fixed vocabulary.
        vocab = sorted(set(self.names) | {"gradient"})
        local = torch.zeros(len(vocab) + 1, device=strategy.root_device)
        flags = self.bad.tolist() if self.bad is not None else []
        for name, flag in zip(self.names, flags, strict=True):
            if flag:
                local[vocab.index(name)] = 1.0
        first = int(self.first) if self.first is not None else -1
        local[-1] = -float(first) if first >= 0 else -float("inf")  # max of -step = the earliest
        merged = strategy.reduce(local, reduce_op="max").tolist()
        names = [n for n, b in zip(vocab, merged[:-1], strict=True) if b > 0]
        earliest = None if merged[-1] == -float("inf") else int(-merged[-1])
        return earliest, names

    def step_is_bad(self) -> bool:
        """Whether the current step saw a non-finite part (one sync; skip mode)."""
        return self.step_bad is not None and bool(self.step_bad)

    def clear(self) -> None:
        """Forget what was recorded (a skipped step is not a divergence)."""
        if self.bad is not None:
            self.bad = torch.zeros_like(self.bad)
            self.first = torch.full_like(self.first, -1)
        self.step_bad = None


def check_divergence(module, trainer, step: int, *, scan_state: bool = False) -> None:
    """Raise :class:`TrainingDiverged` if ``module.nonfinite`` saw a non-finite part since the
    last check, or (``scan_state``: before a checkpoint) the state holds a non-finite tensor.

    Call it at steps every rank picks from the step counter alone (it syncs, and under DDP it
    combines the ranks with a collective).
    """
    distributed = trainer.world_size > 1
    first, parts = module.nonfinite.read(trainer.strategy if distributed else None)
    reason = ""
    if scan_state:
        names = nonfinite_state(module, trainer.optimizers)
        bad = bool(names)
        if distributed:
            flag = torch.tensor(float(bad), device=trainer.strategy.root_device)
            bad = bool(trainer.strategy.reduce(flag, reduce_op="max") > 0)
        if bad:
            shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            parts.append(f"state ({shown or 'on another rank'})")
            reason = "a checkpoint would have held it; none was written"
    if parts:
        raise TrainingDiverged(
            step=first, checked_at=step, last_clean=module.last_clean_check, parts=parts,
            skipped=module.skipped_steps, reason=reason,
        )  # fmt: skip
    module.last_clean_check = step


def snapshot_buffers(module: torch.nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Copies of every buffer (BN statistics, SAR's semantic anchors and gate flags, prototypes):
    what a skipped step puts back (skip mode only: a copy per step is its price)."""
    return [(b, b.detach().clone()) for b in module.buffers()]


def guard_step(module, trainer, params: list[torch.Tensor]) -> None:
    """Before the optimizer step: fold the gradients' finiteness in and, with
    ``on_nonfinite: skip``, drop a non-finite step (gradients to ``None``, so the optimizer leaves
    every parameter and its state alone; buffers back to their values before the step)."""
    tcfg = module.config["trainer"]
    precision = str(tcfg["precision"])
    if not ("16" in precision and "bf16" not in precision):  # fp16: the GradScaler's job
        module.nonfinite.update_grads(params, module.global_step + 1)
    if tcfg["on_nonfinite"] != "skip":
        return
    bad = module.nonfinite.step_is_bad()
    if trainer.world_size > 1:  # every rank skips together (their gradients are averaged)
        flag = torch.tensor(float(bad), device=trainer.strategy.root_device)
        bad = bool(trainer.strategy.reduce(flag, reduce_op="max") > 0)
    if not bad:
        module.nonfinite.clear()
        return
    _, parts = module.nonfinite.read()
    for p in params:
        p.grad = None
    for buffer, saved in module.buffer_snapshot or []:
        buffer.copy_(saved)
    module.nonfinite.clear()
    module.skipped_steps += 1
    module.skipped_parts = sorted({*module.skipped_parts, *parts})
    fraction = tcfg["max_skip_fraction"]
    limit = float(fraction) * int(tcfg["max_steps"])
    if module.skipped_steps > limit:
        raise TrainingDiverged(
            step=module.global_step + 1, checked_at=module.global_step + 1,
            last_clean=module.last_clean_check, parts=module.skipped_parts,
            skipped=module.skipped_steps,
            reason=f"more than trainer.max_skip_fraction={fraction} "
            f"of the {tcfg['max_steps']} steps were skipped",
        )  # fmt: skip
