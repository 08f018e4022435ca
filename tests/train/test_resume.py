"""Exact resume: interrupted at N/2 and resumed to N equals the straight run to N, bitwise."""

import os

import pytest
import torch

from semantic_anchors.train import evaluate, train
from semantic_anchors.train.checkpoint import AtomicCheckpointIO, load_checkpoint
from tests._helpers.runs import TINY

SAR_EARLY_GATE = ["regularizer.name=sar", "regularizer.delta=0.2"]  # gate opens within steps


@pytest.mark.parametrize("workers", [0, pytest.param(1, marks=pytest.mark.slow)])
def test_interrupted_and_resumed_equals_straight(tmp_path, workers):
    common = [*TINY, *SAR_EARLY_GATE, f"data.num_workers={workers}", "trainer.deterministic=true",
              "trainer.max_steps=24", "trainer.val_every=12", "optimizer.lr=0.05"]  # fmt: skip
    straight = train("synthlt-fcn-quick", common, out_dir=tmp_path / "straight")
    train("synthlt-fcn-quick", [*common, "trainer.stop_at_step=12"], out_dir=tmp_path / "split")
    half = load_checkpoint(tmp_path / "split/checkpoints/last.ckpt")
    assert half["global_step"] == 12
    resumed = train(None, ["trainer.stop_at_step=null"], resume=tmp_path / "split")

    a = load_checkpoint(tmp_path / "straight/checkpoints/last.ckpt")
    b = load_checkpoint(tmp_path / "split/checkpoints/last.ckpt")
    assert a["global_step"] == b["global_step"] == 24
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    # The semantic anchors are part of it, and the gate did open during the run.
    assert a["state_dict"]["regularizer.initialized"].all()
    assert a["state_dict"]["regularizer.semantic_anchors"].abs().sum() > 0
    opt_a, opt_b = a["optimizer_states"][0]["state"], b["optimizer_states"][0]["state"]
    assert opt_a.keys() == opt_b.keys()
    for key, state in opt_a.items():  # AdamW moments / SGD momentum, whichever the recipe uses
        for name, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(opt_b[key][name])), name
    assert a["lr_schedulers"] == b["lr_schedulers"]
    assert straight["mIoU"] == resumed["mIoU"] and straight["IoU"] == resumed["IoU"]
    # Logs of the first part were kept, the resumed part has its own folder.
    assert (tmp_path / "split/logs/train/metrics.csv").is_file()
    assert (tmp_path / "split/logs/resumed-from-step-12/metrics.csv").is_file()
    # Re-evaluating the checkpoint reproduces the final validation.
    again = evaluate(tmp_path / "straight")
    assert again["mIoU"] == pytest.approx(straight["mIoU"], abs=1e-9)


def test_resume_refuses_an_incompatible_change(tmp_path):
    train("synthlt-fcn-quick", [*TINY, "trainer.max_steps=2"], out_dir=tmp_path / "run")
    with pytest.raises(
        ValueError, match=r"cannot resume .*regularizer.name was 'none' .* is 'sar'"
    ):
        train(None, ["regularizer.name=sar"], resume=tmp_path / "run")
    with pytest.raises(FileNotFoundError, match=r"no config.yaml"):
        train(None, [], resume=tmp_path / "nothing-here")
    # A finished run is never overwritten by a new one.
    with pytest.raises(FileExistsError, match=r"already holds a run .* --resume"):
        train("synthlt-fcn-quick", [*TINY, "trainer.max_steps=2"], out_dir=tmp_path / "run")


def test_checkpoints_are_written_atomically(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    target = tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(2)}, "semantic_anchors": {}}, target)
    assert torch.equal(io.load_checkpoint(target)["state_dict"]["w"], torch.ones(2))

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(2)}, "semantic_anchors": {}}, target)
    # The previous checkpoint is intact and no temporary file is left behind.
    assert torch.equal(io.load_checkpoint(target)["state_dict"]["w"], torch.ones(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt", "last.ckpt.sha256"]


def test_load_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.ckpt")
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="is not a readable checkpoint"):
        load_checkpoint(bad)
    torch.save({"weights": torch.ones(1)}, tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match="not a semantic-anchors checkpoint"):
        load_checkpoint(tmp_path / "other.ckpt")
