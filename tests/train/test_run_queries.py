"""A query-based model through the whole run: train, pause, resume exactly, evaluate, export."""

import pytest
import torch

from semantic_anchors.train import evaluate, train
from semantic_anchors.train.checkpoint import load_checkpoint
from tests._helpers.runs import TINY

pytest.importorskip("transformers")
pytestmark = pytest.mark.slow

RECIPE = "fashion-scenes-m2f-quick"
COMMON = [
    *TINY, "regularizer.name=sar", "regularizer.delta=0.2", "regularizer.gate=class",
    "trainer.deterministic=true", "trainer.max_steps=12", "trainer.val_every=6",
]  # fmt: skip


def test_mask2former_with_sar_resumes_exactly_and_evaluates(tmp_path):
    straight = train(RECIPE, COMMON, out_dir=tmp_path / "straight")
    train(RECIPE, [*COMMON, "trainer.stop_at_step=6"], out_dir=tmp_path / "split")
    resumed = train(None, ["trainer.stop_at_step=null"], resume=tmp_path / "split")
    a = load_checkpoint(tmp_path / "straight/checkpoints/last.ckpt")
    b = load_checkpoint(tmp_path / "split/checkpoints/last.ckpt")
    assert a["global_step"] == b["global_step"] == 12
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    assert any(k.startswith("model.hf_model.class_predictor") for k in a["state_dict"])
    assert a["state_dict"]["regularizer.anchors"].shape[0] == 11  # background + 10 classes
    assert straight["mIoU"] == resumed["mIoU"] and straight["IoU"] == resumed["IoU"]
    assert evaluate(tmp_path / "straight")["mIoU"] == pytest.approx(straight["mIoU"], abs=1e-9)
