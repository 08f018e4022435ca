"""No lost work: checkpoints during training, kills and signals, one writer per run folder.

A run killed at any moment resumes from its last checkpoint and ends bitwise equal to a straight
run: weights, SAR buffers, optimizer state, schedule and validation metrics.
"""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest

from semantic_anchors.train import RunFolderBusy, train
from semantic_anchors.train.checkpoint import load_checkpoint
from semantic_anchors.train.runfolder import RunLock, folder_state
from tests._helpers.runs import EXACT, TINY, assert_same_run

REPO = Path(__file__).resolve().parents[2]


class _Crash(L.Callback):
    """Dies at the end of a step, as a process killed between two checkpoints would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.step:
            raise RuntimeError(f"simulated crash at step {self.step}")


def test_a_crash_loses_at_most_one_interval_and_resumes_bitwise(tmp_path):
    common = [*EXACT, "trainer.max_steps=18", "trainer.val_every=9", "trainer.checkpoint_every=4"]
    train("synthlt-fcn-quick", common, out_dir=tmp_path / "straight")
    crash_at = random.Random(0).randint(5, 15)  # after the first checkpoint (step 4)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(
            "synthlt-fcn-quick", common, out_dir=tmp_path / "killed", callbacks=[_Crash(crash_at)]
        )
    saved = load_checkpoint(tmp_path / "killed/checkpoints/last.ckpt")["global_step"]
    last_due = max(s for s in (4, 8, 9, 12) if s <= crash_at)  # checkpoint or validation steps
    assert saved == last_due
    assert folder_state(tmp_path / "killed") == "interrupted"
    train(None, [], resume=tmp_path / "killed")
    assert_same_run(tmp_path / "straight", tmp_path / "killed")
    assert folder_state(tmp_path / "killed") == "finished"


def test_best_checkpoint_and_checkpoint_cost_are_kept(tmp_path):
    metrics = train("synthlt-fcn-quick", [*TINY, "trainer.max_steps=6", "trainer.val_every=2",
                    "trainer.save_best=true"], out_dir=tmp_path / "run")  # fmt: skip
    best = load_checkpoint(tmp_path / "run/checkpoints/best.ckpt")
    assert best["semantic_anchors"]["last_val"]["step"] in (2, 4, 6)
    best_miou = best["semantic_anchors"]["last_val"]["mIoU"]
    assert best_miou >= metrics["mIoU"] - 1e-9
    # One save per validation (steps 2, 4, 6) plus the best ones: each was timed.
    assert len(metrics["checkpoint_seconds"]) >= 3
    assert all(s > 0 for s in metrics["checkpoint_seconds"])


def test_pause_is_not_part_of_the_run(tmp_path):
    common = [*EXACT, "trainer.max_steps=12", "trainer.val_every=6"]
    train("synthlt-fcn-quick", common, out_dir=tmp_path / "straight")
    paused = train("synthlt-fcn-quick", [*common, "trainer.stop_at_step=4"], out_dir=tmp_path / "p")
    assert paused["paused_at_step"] == 4
    assert not (tmp_path / "p/metrics.json").exists()  # a paused run is not finished
    assert load_checkpoint(tmp_path / "p/checkpoints/last.ckpt")["global_step"] == 4
    # --resume goes on to max_steps (the pause was not stored as part of the run).
    resumed = train(None, [], resume=tmp_path / "p")
    assert resumed["step"] == 12 and "paused_at_step" not in resumed
    assert_same_run(tmp_path / "straight", tmp_path / "p")


def test_resume_refuses_trajectory_changes_unless_allowed(tmp_path):
    run = tmp_path / "run"
    train(
        "synthlt-fcn-quick", [*TINY, "trainer.max_steps=4", "trainer.stop_at_step=2"], out_dir=run
    )
    original = (run / "config.yaml").read_text()
    with pytest.raises(ValueError) as err:
        train(None, ["seed=7", "optimizer.lr=0.5", "data.batch_size=4"], resume=run)
    for text in ("seed: 0 -> 7", "optimizer.lr", "data.batch_size: 8 -> 4", "--allow-change"):
        assert text in str(err.value)
    with pytest.raises(ValueError, match=r"max_steps=1 but the run is already at step 2"):
        train(None, ["trainer.max_steps=1"], resume=run)
    # Free settings need no permission; allowed changes are recorded with their step.
    train(None, ["optimizer.lr=0.02", "data.num_workers=0"], resume=run, allow_change=True)
    assert (run / "config.yaml").read_text() == original  # the config the run started with
    import yaml

    history = yaml.safe_load((run / "changes.yaml").read_text())
    assert history[0]["step"] == 2
    lr_change = [c for c in history[0]["changes"] if c["key"] == "optimizer.lr"]
    assert lr_change == [{"key": "optimizer.lr", "old": 0.003, "new": 0.02, "kind": "trajectory"}]
    ckpt = load_checkpoint(run / "checkpoints/last.ckpt")
    assert ckpt["semantic_anchors"]["config"]["optimizer"]["lr"] == 0.02
    with pytest.raises(ValueError, match=r"already at step 4"):
        train(None, [], resume=run)  # finished: nothing left to train


def test_run_folder_states_are_explicit(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="simulated crash"):
        train("synthlt-fcn-quick", [*TINY, "trainer.max_steps=6", "trainer.val_every=6"],
              out_dir=run, callbacks=[_Crash(2)])  # fmt: skip
    assert folder_state(run) == "started"  # config and logs, no checkpoint
    csv_before = (run / "logs/train/metrics.csv").read_bytes()
    with pytest.raises(FileExistsError, match=r"started but saved no checkpoint.*--resume"):
        train("synthlt-fcn-quick", [*TINY, "trainer.max_steps=6"], out_dir=run)
    assert (run / "logs/train/metrics.csv").read_bytes() == csv_before  # nothing overwritten
    metrics = train(None, [], resume=run)  # restarts from step 0, keeping the first logs
    assert metrics["step"] == 6
    assert (run / "logs/train/metrics.csv").read_bytes() == csv_before
    assert (run / "logs/resumed-from-step-0/metrics.csv").is_file()


def _hold_lock(folder: Path) -> subprocess.Popen:
    code = (
        "import sys, time; from semantic_anchors.train.runfolder import RunLock; "
        f"lock = RunLock({str(folder)!r}).acquire(); print('locked', flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_one_writer_per_run_folder(tmp_path):
    run = tmp_path / "run"
    holder = _hold_lock(run)
    try:
        with pytest.raises(RunFolderBusy, match=rf"in use by PID {holder.pid} on .*started"):
            train("synthlt-fcn-quick", [*TINY, "trainer.max_steps=2"], out_dir=run)
        with pytest.raises(RunFolderBusy, match=rf"PID {holder.pid}"):
            RunLock(run).acquire()
    finally:
        holder.kill()
        holder.communicate()
    # The dead holder's lock file is still there, but the lock went with the process.
    assert (run / ".lock").is_file()
    train("synthlt-fcn-quick", [*TINY, "trainer.max_steps=2"], out_dir=run)
    assert folder_state(run) == "finished"
    # A folder in use is reported as such (with its holder) before anything about its state.
    holder = _hold_lock(run)
    try:
        for call in (
            lambda: train("synthlt-fcn-quick", [*TINY], out_dir=run),
            lambda: train(None, ["trainer.max_steps=4"], resume=run),
        ):
            with pytest.raises(RunFolderBusy, match=rf"in use by PID {holder.pid}"):
                call()
    finally:
        holder.kill()
        holder.communicate()


# --------------------------------------------------------------------------- real processes
def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "semantic_anchors.cli", *args]


ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def _train_args(out: Path, steps: int) -> list[str]:
    return _cli("train", "synthlt-fcn-quick", "--out", str(out), "--set", *EXACT,
                f"trainer.max_steps={steps}", "trainer.val_every=1000",
                "trainer.checkpoint_every=3")  # fmt: skip


def _start_training(out: Path, steps: int) -> subprocess.Popen:
    return subprocess.Popen(
        _train_args(out, steps), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV
    )


def _wait_for_checkpoint(proc: subprocess.Popen, ckpt: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not ckpt.is_file():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no checkpoint in time"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_signalled_process_resumes_bitwise(tmp_path, signum):
    steps = 60
    straight = subprocess.run(
        _train_args(tmp_path / "straight", steps), capture_output=True, text=True, env=ENV
    )
    assert straight.returncode == 0, straight.stderr
    run = tmp_path / "run"
    proc = _start_training(run, steps)
    _wait_for_checkpoint(proc, run / "checkpoints/last.ckpt")
    time.sleep(random.Random(int(signum)).uniform(0.0, 1.0))  # a random step after the first one
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    stopped_at = load_checkpoint(run / "checkpoints/last.ckpt")["global_step"]
    assert 3 <= stopped_at < steps, (stopped_at, err)
    if signum == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == 128 + signum
        name = signal.Signals(signum).name
        lines = [line for line in err.splitlines() if line.startswith("semantic-anchors train:")]
        assert lines == [
            f"semantic-anchors train: {name} at step {stopped_at}; checkpoint saved to "
            f"{run / 'checkpoints/last.ckpt'}; resume with: semantic-anchors train --resume {run}"
        ]
    resumed = subprocess.run(
        _cli("train", "--resume", str(run)), capture_output=True, text=True, env=ENV
    )
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(tmp_path / "straight", run)


@pytest.mark.slow
def test_two_trainings_into_one_folder(tmp_path):
    run = tmp_path / "run"
    first = _start_training(run, 400)
    _wait_for_checkpoint(first, run / "checkpoints/last.ckpt")
    second = _start_training(run, 400)
    _, err = second.communicate(timeout=120)
    assert second.returncode == 2
    assert f"in use by PID {first.pid}" in err
    first.kill()
    first.communicate()
    at = load_checkpoint(run / "checkpoints/last.ckpt")["global_step"]
    again = subprocess.run(
        _cli("train", "--resume", str(run), "--set", f"trainer.max_steps={at + 2}"),
        capture_output=True, text=True, env=ENV,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert folder_state(run) == "finished"
