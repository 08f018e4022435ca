"""Short training runs through the ``semantic-anchors train`` command, for ``gpu_check.py``.

A run folder holds ``metrics.json`` (final validation, ``train_seconds``, ``steps``,
``world_size``) and ``logs/train/metrics.csv`` (Lightning's CSV logger: ``train/loss`` and the
regularizer's ``reg/gate_open`` every ``trainer.log_every`` steps); both are read back here.
"""

from __future__ import annotations

import csv
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path


def run_with_timeout(cmd: list[str], timeout: float, env: dict | None = None) -> dict:
    """Run ``cmd`` in its own process group; on timeout the whole group (data workers included)
    is killed. Returns ``returncode`` (None on timeout), ``output`` (stdout + stderr) and
    ``seconds``."""
    start = time.monotonic()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        start_new_session=True,
    )  # fmt: skip
    try:
        output, _ = proc.communicate(timeout=max(timeout, 1.0))
        code = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        code = None
    return {"returncode": code, "output": output or "", "seconds": time.monotonic() - start}


def train_overrides(cfg: dict, *, ddp: bool) -> list[str]:
    steps = cfg["ddp_steps"] if ddp else cfg["train_steps"]
    sets = [
        "regularizer.name=sar", f"trainer.accelerator={cfg['train_accelerator']}",
        f"trainer.max_steps={steps}", f"trainer.val_every={steps}", *cfg["train_sets"],
    ]  # fmt: skip
    if ddp:
        sets += ["trainer.strategy=ddp", "trainer.devices=1"]
    return sets


def shown_command(cfg: dict, *, ddp: bool) -> str:
    """The command as a user types it (the check runs the same through ``python -m``)."""
    args = ["semantic-anchors", "train", cfg["train_recipe"], "--out", "RUN", "--set"]
    return shlex.join([*args, *train_overrides(cfg, ddp=ddp)])


def _read_log(folder: Path) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    losses, gates = [], []
    with open(folder / "logs" / "train" / "metrics.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            if row.get("train/loss"):
                losses.append((int(row["step"]), float(row["train/loss"])))
            if row.get("reg/gate_open"):
                gates.append((int(row["step"]), float(row["reg/gate_open"])))
    return losses, gates


def summarize_run(folder: Path) -> dict:
    """Loss at the start and the end of training, the SAR gate, speed and final mIoU."""
    metrics = json.loads((folder / "metrics.json").read_text())
    losses, gates = _read_log(folder)
    k = max(1, min(3, len(losses) // 2))
    first = statistics.mean(v for _, v in losses[:k])
    last = statistics.mean(v for _, v in losses[-k:])
    opened = [step for step, value in gates if value > 0]
    return {
        "steps": int(metrics["steps"]), "world_size": int(metrics["world_size"]),
        "train_seconds": float(metrics["train_seconds"]),
        "steps_per_s": int(metrics["steps"]) / float(metrics["train_seconds"]),
        "loss_first": first, "loss_last": last, "loss_decreased": last < first,
        "logged_steps": len(losses), "gate_logged": len(gates), "gate_opened": bool(opened),
        "gate_first_open_step": opened[0] if opened else None,
        "gate_open_fraction": len(opened) / len(gates) if gates else 0.0,
        "mIoU": metrics.get("mIoU"),
    }  # fmt: skip


def run_training(cfg: dict, runs_dir: Path, *, ddp: bool, timeout: float) -> dict:
    """One ``semantic-anchors train`` run; on a GPU the DDP run logs NCCL's initialisation."""
    folder = runs_dir / ("ddp" if ddp else "single")
    cmd = [sys.executable, "-m", "semantic_anchors.cli", "train", cfg["train_recipe"],
           "--out", str(folder), "--set", *train_overrides(cfg, ddp=ddp)]  # fmt: skip
    env = dict(os.environ)
    cuda = cfg["train_accelerator"] == "gpu"
    if ddp and cuda:
        env["NCCL_DEBUG"] = "INFO"
    result = {
        "run": "ddp" if ddp else "single", "command": shown_command(cfg, ddp=ddp),
        "strategy": "ddp" if ddp else "auto", "devices": 1,
        "backend": ("nccl" if cuda else "gloo") if ddp else None,
    }  # fmt: skip
    done = run_with_timeout(cmd, timeout, env)
    result["wall_s"] = done["seconds"]
    if done["returncode"] is None:
        result.update(status="timeout", note=f"stopped after {timeout:.0f} s (its time budget)")
        return result
    if done["returncode"] != 0:
        tail = done["output"].strip().splitlines()[-3:]
        result.update(status="failed", note=f"exit {done['returncode']}: " + " / ".join(tail))
        return result
    result.update(status="ok", **summarize_run(folder))
    if ddp and cuda:
        result["nccl_initialised"] = "NCCL INFO" in done["output"]
    return result
