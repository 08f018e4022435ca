"""A training step with SAR makes no host-device sync (issue: sync-free training step).

The counter (tests/_helpers/syncs.py) patches every host read of a tensor value and every op whose output
size depends on the data; on a GPU, ``torch.cuda.set_sync_debug_mode("error")`` checks the same.
"""

from __future__ import annotations

import lightning as L
import pytest
import torch

from semantic_anchors import SemanticAnchorRegularizer
from semantic_anchors.train import train
from semantic_anchors.train.parts import VALIDATE_STEPS
from tests._helpers.runs import TINY
from tests._helpers.syncs import count_syncs


def _sar_step(sar, head):
    features = torch.randn(2, 16, 8, 8, requires_grad=True)
    labels = torch.randint(0, 4, (2, 32, 32))
    with count_syncs() as log:
        sar(features, labels, head).backward()
    return log


def test_the_counter_sees_the_validating_checks():
    """The counter can fail: the checks of ``validate=True`` sync, and it says where."""
    log = _sar_step(SemanticAnchorRegularizer(4, 16, validate=True), torch.nn.Conv2d(16, 4, 1))
    assert log.counts["Tensor.__bool__"] == 2  # finite features, labels in range
    assert all("_validation.py" in where for where in log.where)


def test_sar_forward_and_backward_make_no_sync_without_checks():
    sar, head = SemanticAnchorRegularizer(4, 16, validate=False), torch.nn.Conv2d(16, 4, 1)
    for _ in range(3):
        assert _sar_step(sar, head).total == 0


def test_an_int_validate_checks_the_first_calls_only():
    sar, head = SemanticAnchorRegularizer(4, 16, validate=2), torch.nn.Conv2d(16, 4, 1)
    assert [_sar_step(sar, head).total for _ in range(4)] == [2, 2, 0, 0]
    with pytest.raises(ValueError, match="labels"):  # a checked call still refuses bad labels
        SemanticAnchorRegularizer(4, 16, validate=1)(
            torch.randn(1, 16, 2, 2), torch.full((1, 2, 2), 7), torch.nn.Conv2d(16, 4, 1)
        )
    with pytest.raises(ValueError, match="validate"):
        SemanticAnchorRegularizer(4, 16, validate=-1)


class _CountPerStep(L.Callback):
    """Counts syncs from the start of each training batch to its end (forward, loss, logging,
    backward and optimizer step), per global step."""

    def __init__(self) -> None:
        self.per_step: dict[int, int] = {}
        self.where: dict[int, str] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._context = count_syncs()
        self._log = self._context.__enter__()
        self._step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._context.__exit__(None, None, None)
        self.per_step[self._step] = self._log.total
        self.where[self._step] = self._log.summary()


def test_a_training_step_with_sar_is_sync_free_after_the_checked_steps(tmp_path):
    counter = _CountPerStep()
    steps, every = VALIDATE_STEPS + 10, 5
    overrides = [*TINY, "regularizer.name=sar", f"trainer.max_steps={steps}",
                 f"trainer.log_every={every}", f"trainer.val_every={steps}"]  # fmt: skip
    train("synthlt-fcn-quick", overrides, out_dir=tmp_path / "run", callbacks=[counter])
    assert sorted(counter.per_step) == list(range(steps))
    free = [s for s in range(VALIDATE_STEPS, steps) if (s + 1) % every != 0]
    synced = {s: counter.where[s] for s in free if counter.per_step[s]}
    assert not synced, f"host-device syncs in training steps: {synced}"
    assert all(counter.per_step[s] > 0 for s in range(VALIDATE_STEPS))  # the checked steps


def test_the_logged_statistics_are_those_of_the_logged_step(tmp_path):
    """Statistics are handed to the logger on the step it writes, not a stale earlier step."""
    import csv

    overrides = [*TINY, "regularizer.name=sar", "trainer.max_steps=6", "trainer.log_every=3",
                 "trainer.val_every=100"]  # fmt: skip
    train("synthlt-fcn-quick", overrides, out_dir=tmp_path / "run")
    (path,) = (tmp_path / "run" / "logs").glob("*/metrics.csv")
    with path.open() as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("train/loss")]
    assert [int(r["step"]) for r in rows] == [2, 5]
    for row in rows:  # the total is the sum of its parts of the same step
        total = float(row["train/loss_main"]) + float(row["train/loss_reg"])
        assert float(row["train/loss"]) == pytest.approx(total, rel=1e-5)
        parts = float(row["reg/loss_aux"]) + float(row["reg/loss_p2a"])
        assert float(row["train/loss_reg"]) == pytest.approx(parts, rel=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_a_gpu_a_sar_step_makes_no_sync():  # pragma: no cover - GPU only
    sar = SemanticAnchorRegularizer(4, 16, validate=False).cuda()
    head = torch.nn.Conv2d(16, 4, 1).cuda()
    features = torch.randn(2, 16, 8, 8, device="cuda", requires_grad=True)
    labels = torch.randint(0, 4, (2, 32, 32), device="cuda")
    sar(features, labels, head).backward()  # warm-up (lazy init may sync)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        sar(features, labels, head).backward()
    finally:
        torch.cuda.set_sync_debug_mode(0)
