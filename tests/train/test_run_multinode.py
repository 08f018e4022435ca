"""Multi-node training: two one-process "nodes" on localhost, launched as on a cluster.

Each node runs the command line as a user runs it on a cluster, with gloo on CPU: with Lightning's
own environment (``MASTER_ADDR``, ``MASTER_PORT``, ``NODE_RANK``), or under ``torchrun``. Then the
ranks' agreement on signals and timed saves, which takes a collective only at agreed steps (fast,
with a stand-in trainer).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from semantic_anchors.train import evaluate, train
from semantic_anchors.train.callbacks import RunCheckpointer, TrainingInterrupted
from semantic_anchors.train.checkpoint import load_checkpoint
from semantic_anchors.train.runfolder import folder_state
from tests._helpers.runs import TINY

REPO = Path(__file__).resolve().parents[2]
TWO_NODES = ["trainer.num_nodes=2", "trainer.devices=1", "trainer.strategy=ddp",
             "trainer.accelerator=cpu"]  # fmt: skip
RECIPE = [*TINY, "data.val_options={num_images: 21}", "regularizer.name=sar",
          "regularizer.delta=0.05", "trainer.deterministic=true", *TWO_NODES]  # fmt: skip
LAUNCH_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "GROUP_RANK", "NODE_RANK", "MASTER_ADDR",
                    "MASTER_PORT", "LOCAL_WORLD_SIZE", "SLURM_NTASKS", "SLURM_PROCID")  # fmt: skip
TIMEOUT = 300  # seconds for one launch of both nodes


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARIABLES}
    return {**env, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **extra}


def _start(args_of_node, *, torchrun: bool = False) -> list[subprocess.Popen]:
    """Start node 0 and node 1 together; ``args_of_node(rank)`` is a node's ``semantic-anchors``
    arguments."""
    port, procs = _free_port(), []
    for rank in (0, 1):
        cli = ["-m", "semantic_anchors.cli", *args_of_node(rank)]
        if torchrun:
            cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2",
                   "--nproc-per-node=1", f"--node-rank={rank}", "--master-addr=127.0.0.1",
                   f"--master-port={port}", *cli]  # fmt: skip
            env = _env()
        else:
            cmd = [sys.executable, *cli]
            env = _env(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), NODE_RANK=str(rank))
        procs.append(subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        ))  # fmt: skip
    return procs


def _finish(procs: list[subprocess.Popen], codes=(0, 0)) -> list[str]:
    """Wait for both nodes (killing both at the deadline: a hang fails, never blocks) and check
    their exit codes; returns their standard outputs."""
    deadline, outs = time.monotonic() + TIMEOUT, []
    try:
        for proc in procs:
            outs.append(proc.communicate(timeout=max(1.0, deadline - time.monotonic())))
    except subprocess.TimeoutExpired:
        for proc in procs:
            proc.kill()
        tails = [proc.communicate()[1][-2000:] for proc in procs]
        pytest.fail(f"the nodes did not end within {TIMEOUT} s: {tails}")
    for rank, (proc, code) in enumerate(zip(procs, codes, strict=True)):
        assert proc.returncode == code, f"node {rank}: {outs[rank][1][-3000:]}"
    return [out for out, _ in outs]


def _train_args(out: Path, *extra: str) -> list[str]:
    return ["train", "synthlt-fcn-quick", "--out", str(out), "--set", *RECIPE, *extra]


STRAIGHT = ["trainer.max_steps=6", "trainer.val_every=6"]


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    """A two-node run on two machines without a shared file system: each node has its own
    ``--out`` folder; node 0's process holds the lock and writes the run."""
    root = tmp_path_factory.mktemp("straight")
    procs = _start(lambda rank: _train_args(root / f"node{rank}" / "run", *STRAIGHT))
    _finish(procs)
    run = root / "node0" / "run"
    assert json.loads((run / ".lock").read_text())["pid"] == procs[0].pid
    assert not (root / "node1").exists()  # ranks other than 0 write nothing
    return run


@pytest.mark.slow
def test_two_nodes_agree_and_equal_a_single_process_eval(straight):
    metrics = json.loads((straight / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["steps"] == 6
    # Parameters and buffers (SAR's anchors, semantic anchors and gate state) agree across nodes.
    first, second = metrics["rank_checksums"]
    assert first == second and len(first) > 50
    # The synced validation (21 images split 11 / 10 across nodes) equals one process.
    single = evaluate(straight)
    assert single["step"] == 6
    for key in ("mIoU", "aAcc", "mAcc", "head_mIoU", "body_mIoU", "tail_mIoU"):
        assert single[key] == pytest.approx(metrics[key], abs=1e-9), key
    assert single["IoU"] == pytest.approx(metrics["IoU"], abs=1e-9, nan_ok=True)


@pytest.mark.slow
def test_pause_on_two_nodes_and_resume_under_torchrun_equals_the_straight_run(straight, tmp_path):
    run = tmp_path / "shared" / "run"  # one folder that both nodes see: a shared file system
    outs = _finish(_start(lambda rank: _train_args(run, *STRAIGHT, "trainer.stop_at_step=3")))
    assert "paused at step 3" in outs[0]
    assert folder_state(run) == "interrupted"
    # Every node reads config.yaml and last.ckpt of the shared folder; node 0 writes.
    _finish(_start(lambda rank: ["train", "--resume", str(run)], torchrun=True))
    assert folder_state(run) == "finished"
    a = load_checkpoint(straight / "checkpoints/last.ckpt")
    b = load_checkpoint(run / "checkpoints/last.ckpt")
    assert a["global_step"] == b["global_step"] == 6
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    assert a["semantic_anchors"]["last_val"] == b["semantic_anchors"]["last_val"]
    assert (run / "logs" / "resumed-from-step-3").is_dir()


@pytest.mark.slow
def test_sigterm_to_one_node_stops_both_at_an_agreed_step(tmp_path):
    run, steps = tmp_path / "run", 24
    extra = (f"trainer.max_steps={steps}", "trainer.val_every=1000", "trainer.checkpoint_every=3")
    procs = _start(lambda rank: _train_args(run, *extra))
    deadline = time.monotonic() + TIMEOUT
    while not (run / "checkpoints/last.ckpt").is_file():  # step 3: training is under way
        if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
            for proc in procs:
                proc.kill()
            pytest.fail(f"no checkpoint: {[p.communicate()[1][-2000:] for p in procs]}")
        time.sleep(0.05)
    procs[1].send_signal(signal.SIGTERM)  # node 1 only: the node that does not write
    _finish(procs, codes=(128 + signal.SIGTERM, 128 + signal.SIGTERM))
    stopped = load_checkpoint(run / "checkpoints/last.ckpt")["global_step"]
    assert stopped % 10 == 0 and 10 <= stopped < steps  # the default agree_every
    assert folder_state(run) == "interrupted"
    _finish(_start(lambda rank: ["train", "--resume", str(run)]))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["step"] == steps and metrics["world_size"] == 2
    assert metrics["rank_checksums"][0] == metrics["rank_checksums"][1]


# --------------------------------------------------------------------------- agreement, no processes
class _Strategy:
    """A stand-in for Lightning's DDP strategy: the other ranks' values are ``others``."""

    root_device = torch.device("cpu")

    def __init__(self, trainer, others: tuple[float, float]) -> None:
        self.trainer, self.others, self.steps = trainer, torch.tensor(others), []

    def reduce(self, tensor: torch.Tensor, reduce_op: str) -> torch.Tensor:
        assert reduce_op == "max"
        self.steps.append(self.trainer.global_step)
        return torch.maximum(tensor, self.others)


def _trainer(world_size: int = 2, max_steps: int = 23, others=(0.0, 0.0)) -> SimpleNamespace:
    trainer = SimpleNamespace(world_size=world_size, max_steps=max_steps, global_step=0, saved=[])
    trainer.strategy = _Strategy(trainer, others)
    trainer.save_checkpoint = lambda path: trainer.saved.append(trainer.global_step)
    return trainer


def _run(checkpointer, trainer, signal_at: int | None = None) -> None:
    for step in range(1, trainer.max_steps + 1):
        trainer.global_step = step
        if step == signal_at:
            checkpointer._signal = signal.SIGTERM  # as its handler sets it, on this rank only
        checkpointer.on_train_batch_end(trainer, None, None, None, step - 1)


def test_ranks_agree_only_at_agreed_steps(tmp_path):
    checkpointer = RunCheckpointer(tmp_path, val_every=1000, every_minutes=1e-9, agree_every=5)
    trainer = _trainer()
    _run(checkpointer, trainer)
    assert trainer.strategy.steps == [5, 10, 15, 20, 23]  # every 5th step and the last
    assert trainer.saved == [5, 10, 15, 20]  # a timed save is due at every step, taken together


def test_a_signal_stops_all_ranks_at_the_next_agreed_step(tmp_path):
    checkpointer = RunCheckpointer(tmp_path, val_every=1000, agree_every=5)
    trainer = _trainer()
    with pytest.raises(TrainingInterrupted) as stop:
        _run(checkpointer, trainer, signal_at=6)  # this rank, between two agreed steps
    assert (stop.value.step, stop.value.signum) == (10, signal.SIGTERM)
    assert trainer.strategy.steps == [5, 10] and trainer.saved == [10]
    # Another rank's signal stops this one too; one process decides at once.
    trainer = _trainer(others=(float(signal.SIGINT), 0.0))
    with pytest.raises(TrainingInterrupted) as stop:
        _run(RunCheckpointer(tmp_path, val_every=1000, agree_every=5), trainer)
    assert (stop.value.step, stop.value.signum, trainer.saved) == (5, signal.SIGINT, [5])
    trainer = _trainer(world_size=1)
    with pytest.raises(TrainingInterrupted) as stop:
        _run(RunCheckpointer(tmp_path, val_every=1000, agree_every=5), trainer, signal_at=6)
    assert (stop.value.step, trainer.strategy.steps, trainer.saved) == (6, [], [6])


@pytest.mark.parametrize("value", [0, -3, 2.5, True, "10"])
def test_agree_every_must_be_a_positive_integer(tmp_path, value):
    with pytest.raises(ValueError, match=rf"agree_every must be a positive integer, got {value!r}"):
        RunCheckpointer(tmp_path, val_every=10, agree_every=value)


def test_the_checkpointer_owns_sigterm_during_training(tmp_path):
    """Lightning sets its own SIGTERM handler after ``on_fit_start`` (it broadcasts from inside
    the handler, which hangs DDP); the checkpointer's replaces it, and the handlers from before
    fitting come back afterwards."""
    import lightning as L

    seen = []

    class Probe(L.Callback):
        def on_train_batch_start(self, trainer, *args) -> None:
            seen.append(signal.getsignal(signal.SIGTERM))

    before = signal.getsignal(signal.SIGTERM)
    train("synthlt-fcn-quick", [*TINY, "trainer.max_steps=1", "trainer.val_every=1"],
          out_dir=tmp_path / "run", callbacks=[Probe()])  # fmt: skip
    handlers = {getattr(h, "__func__", None) for h in seen}
    assert handlers == {RunCheckpointer._on_signal}
    assert signal.getsignal(signal.SIGTERM) is before
