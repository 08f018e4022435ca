"""The non-finite policy: a NaN (in CE, in SAR's p2a, in a gradient, in the regularizer's inputs)
stops the run with a named message, never reaches a checkpoint, and the run resumes from the last
finite checkpoint to end bitwise equal to a straight run; ``on_nonfinite: skip`` drops the step."""

import json
import random

import lightning as L
import pytest
import torch

from semantic_anchors.cli import main
from semantic_anchors.train import TrainingDiverged, train
from semantic_anchors.train.checkpoint import checkpoint_candidates, load_checkpoint
from semantic_anchors.train.divergence import read_divergence
from semantic_anchors.train.runfolder import RunLock, folder_state
from tests._helpers.runs import EXACT, TINY, assert_same_run

SCHEDULE = ["trainer.max_steps=12", "trainer.val_every=12", "trainer.checkpoint_every=4"]
COMMON = [*EXACT, *SCHEDULE]
CE = [*TINY, "trainer.deterministic=true", "optimizer.lr=0.05", *SCHEDULE]


class InjectNaN(L.Callback):
    """Makes one part non-finite on training step ``step`` (counted from 1)."""

    def __init__(self, where: str, step: int) -> None:
        self.where, self.step = where, step

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if trainer.global_step + 1 != self.step:
            return
        if self.where == "ce":
            crit = module.criterion
            original = type(crit).forward.__get__(crit)
            crit.forward = lambda *a, **k: original(*a, **k) * float("nan")
        elif self.where == "p2a":
            reg = module.regularizer
            original = type(reg).compute.__get__(reg)

            def compute(*args):
                loss, stats = original(*args)
                nan = torch.tensor(float("nan"))
                return loss + nan, {**stats, "loss_p2a": stats["loss_p2a"] + nan}

            reg.compute = compute

    def on_after_backward(self, trainer, module) -> None:
        if self.where == "gradient" and trainer.global_step + 1 == self.step:
            next(module.model.parameters()).grad.view(-1)[0] = float("inf")

    def on_train_batch_end(self, trainer, module, *args) -> None:
        for obj, name in ((module.criterion, "forward"), (module.regularizer, "compute")):
            if obj is not None:
                obj.__dict__.pop(name, None)


def all_finite(ckpt: dict) -> bool:
    tensors = [t for t in ckpt["state_dict"].values() if t.is_floating_point()]
    for state in ckpt["optimizer_states"][0]["state"].values():
        tensors += [t for t in state.values() if torch.is_tensor(t) and t.is_floating_point()]
    return all(bool(torch.isfinite(t).all()) for t in tensors)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    run = tmp_path_factory.mktemp("straight") / "run"
    train("synthlt-fcn-quick", COMMON, out_dir=run)
    return run


@pytest.mark.parametrize(
    ("where", "part"), [("ce", "ce"), ("p2a", "reg.loss_p2a"), ("gradient", "gradient")]
)
def test_a_nan_stops_keeps_the_finite_checkpoint_and_resumes_bitwise(
    tmp_path, straight, where, part
):
    step = random.Random(where).randint(5, 11)  # after the first checkpoint (step 4)
    run = tmp_path / "run"
    with pytest.raises(TrainingDiverged) as caught:
        train("synthlt-fcn-quick", COMMON, out_dir=run, callbacks=[InjectNaN(where, step)])
    err = caught.value
    assert part in err.parts
    assert err.step == step  # log_every=1: read at every step, so the window is that step
    kept = 4 * ((step - 1) // 4)  # the last checkpoint before the NaN
    assert err.checkpoint == run / "checkpoints" / "last.ckpt" and err.checkpoint_step == kept
    text = str(err)
    assert f"training diverged at step {step}" in text and part in text
    assert f"semantic-anchors train --resume {run} --allow-change --set optimizer.lr=0.005" in text
    assert read_divergence(run)["step"] == step and folder_state(run) == "interrupted"
    for path in checkpoint_candidates(run / "checkpoints"):
        ckpt = load_checkpoint(path)
        assert all_finite(ckpt) and ckpt["global_step"] <= kept
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == kept
    RunLock(run).acquire().release()  # the lock went with the error
    train(resume=run)  # the fault was transient: the resumed run is the straight run
    assert_same_run(straight, run)
    assert read_divergence(run) is None


def test_the_window_is_named_when_checks_are_sparse(tmp_path):
    """With log_every=100 the flag is read only at checkpoint steps (and by SAR's input checks of
    its first 10 steps, which see the NaN weights at step 7); it still knows the step."""
    run = tmp_path / "run"
    with pytest.raises(TrainingDiverged) as caught:
        train(
            "synthlt-fcn-quick", [*COMMON, "trainer.log_every=100"], out_dir=run,
            callbacks=[InjectNaN("ce", 6)],
        )  # fmt: skip
    err = caught.value
    assert (err.step, err.checked_at, err.last_clean) == (6, 7, 4)
    assert "at step 6 (seen by the check at step 7)" in str(err)
    assert {"ce", "reg.input_features"} <= set(err.parts)
    with pytest.raises(TrainingDiverged) as caught:  # no SAR: only the checkpoint check reads it
        train(
            "synthlt-fcn-quick", [*CE, "trainer.log_every=100"],
            out_dir=tmp_path / "ce", callbacks=[InjectNaN("ce", 6)],
        )  # fmt: skip
    assert (caught.value.step, caught.value.checked_at, caught.value.last_clean) == (6, 8, 4)
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 4


def test_the_regularizer_input_check_reports_a_divergence_not_its_api_wording(tmp_path):
    class NaNFeatures(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if trainer.global_step == 1:  # step 2: inside regularizer.validate (10 steps)
                forward = type(module.model).forward_train.__get__(module.model)

                def poisoned(x):
                    out = forward(x)
                    out.features.data.fill_(float("nan"))
                    return out

                module.model.forward_train = poisoned
            else:
                module.model.__dict__.pop("forward_train", None)

    with pytest.raises(TrainingDiverged) as caught:
        train("synthlt-fcn-quick", COMMON, out_dir=tmp_path / "r", callbacks=[NaNFeatures()])
    assert caught.value.step == 2 and "reg.input_features" in caught.value.parts
    assert "must be finite" not in str(caught.value)


def test_the_cli_probe_names_the_divergence(tmp_path, capsys):
    run = tmp_path / "run"
    args = [*TINY, "optimizer.lr=1e30", "regularizer.name=none", "trainer.max_steps=30"]
    assert main(["train", "synthlt-fcn-quick", "--out", str(run), "--set", *args]) == 3
    err = capsys.readouterr().err
    assert "semantic-anchors train: training diverged at step" in err and "non-finite ce" in err
    assert "Traceback" not in err and "--set optimizer.lr=1e+29" in err
    assert not checkpoint_candidates(run / "checkpoints")  # nothing finite to keep
    assert json.loads((run / "diverged.json").read_text())["parts"][0] == "ce"


class Snapshots(L.Callback):
    """The full state after each step."""

    def __init__(self) -> None:
        self.states: dict[int, dict] = {}

    def on_train_batch_end(self, trainer, module, *args) -> None:
        opt = trainer.optimizers[0].state
        self.states[trainer.global_step] = {
            **{k: v.clone() for k, v in module.state_dict().items()},
            **{f"opt.{i}.{n}": t.clone() for i, s in enumerate(opt.values())
               for n, t in s.items() if torch.is_tensor(t)},
        }  # fmt: skip


def test_skip_drops_the_step_with_its_state_changes_and_counts_it(tmp_path):
    snaps = Snapshots()
    args = [*COMMON, "trainer.on_nonfinite=skip", "trainer.max_skip_fraction=0.2"]
    metrics = train(
        "synthlt-fcn-quick", args, out_dir=tmp_path / "r", callbacks=[InjectNaN("p2a", 6), snaps]
    )
    assert metrics["skipped_steps"] == 1 and "reg.loss_p2a" in metrics["skipped_parts"]
    before, after = snaps.states[5], snaps.states[6]
    assert before.keys() == after.keys()
    for key in before:  # weights, BN statistics, SAR's anchors and gate, optimizer moments
        assert torch.equal(before[key], after[key]), key
    assert any(not torch.equal(snaps.states[7][k], after[k]) for k in after)  # step 7 trained
    assert after["regularizer.initialized"].any()  # the gate had opened: its state was kept
    ckpt = load_checkpoint(tmp_path / "r" / "checkpoints" / "last.ckpt")
    assert all_finite(ckpt) and ckpt["semantic_anchors"]["skipped_steps"] == 1


def test_skipping_too_many_steps_stops_the_run(tmp_path):
    class AlwaysNaN(InjectNaN):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            self.step = trainer.global_step + 1
            super().on_train_batch_start(trainer, module, batch, batch_idx)

    args = [*COMMON, "trainer.on_nonfinite=skip", "trainer.max_skip_fraction=0.1"]
    with pytest.raises(TrainingDiverged) as caught:
        train("synthlt-fcn-quick", args, out_dir=tmp_path / "r", callbacks=[AlwaysNaN("ce", 1)])
    assert caught.value.skipped == 2  # more than 0.1 * 12 steps
    assert "max_skip_fraction=0.1" in str(caught.value)


def test_a_lower_learning_rate_on_resume_takes_effect(tmp_path):
    """The resume command a divergence prints: from step 4 on, the schedule of the new rate."""
    run, reference = tmp_path / "run", tmp_path / "reference"
    train("synthlt-fcn-quick", [*COMMON, "trainer.stop_at_step=4"], out_dir=run)
    train(resume=run, overrides=["optimizer.lr=0.005", "trainer.stop_at_step=8"], allow_change=True)
    low = [*COMMON, "optimizer.lr=0.005", "trainer.stop_at_step=8"]
    train("synthlt-fcn-quick", low, out_dir=reference)
    got, want = (load_checkpoint(r / "checkpoints" / "last.ckpt") for r in (run, reference))
    assert set(got["lr_schedulers"][0]["base_lrs"]) == {0.005}
    assert got["lr_schedulers"][0]["_last_lr"] == want["lr_schedulers"][0]["_last_lr"]
    lrs = [[g["lr"] for g in c["optimizer_states"][0]["param_groups"]] for c in (got, want)]
    assert lrs[0] == lrs[1] and lrs[0][0] > 0


def test_finite_weights_that_overflow_in_evaluation_are_a_divergence(tmp_path):
    """Validation logits that are not finite (finite but huge weights) stop the run as a
    divergence before the validation's checkpoint, not with the metric's input check."""

    class Blow(L.Callback):
        def on_validation_start(self, trainer, module):
            with torch.no_grad():
                for p in module.model.parameters():
                    p.mul_(1e30)

    run = tmp_path / "run"
    with pytest.raises(TrainingDiverged) as caught:
        train("synthlt-fcn-quick", CE, out_dir=run, callbacks=[Blow()])
    assert caught.value.parts == ["validation logits"] and "evaluation mode" in str(caught.value)
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 8  # kept
