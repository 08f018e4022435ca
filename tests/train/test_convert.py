"""``convert-official``: a checkpoint in the SAR authors' layout becomes a run that evaluates."""

import pytest
import torch

from semantic_anchors import SemanticAnchorRegularizer
from semantic_anchors.cli import main
from semantic_anchors.models import create_model, list_models
from semantic_anchors.train import evaluate, train
from semantic_anchors.train.checkpoint import load_checkpoint
from semantic_anchors.train.convert import map_official_state
from tests._helpers.writers import write_cityscapes

MODELS = ["fcn_small", *(["fcn_hr18"] if "fcn_hr18" in list_models() else [])]


def official_checkpoint(model: torch.nn.Module, sar: SemanticAnchorRegularizer) -> dict:
    """What the authors' code saves: the mmseg segmentor's keys plus the SAR module's own."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    emb = sar.embedding.state_dict()
    for key, value in emb.items():
        if key.startswith("linear."):
            state["projecter_linear." + key[len("linear.") :]] = value.clone()
        elif key.startswith("conv.0."):
            state["projecter.conv." + key[len("conv.0.") :]] = value.clone()
        else:
            state["projecter.bn." + key[len("conv.1.") :]] = value.clone()
    c, d = sar.anchors.shape
    state["random_center"] = torch.randn(c, d)
    state["momentum_center_feat"] = torch.randn(c, d)
    state["update_flag"] = torch.tensor(1)
    state["center_lbl"] = torch.arange(c)
    state["local_iter"] = torch.tensor([1234])
    return {"meta": {"mmseg_version": "0.x"}, "state_dict": state}


@pytest.mark.parametrize("name", MODELS)
def test_official_checkpoint_converts_and_evaluates(tmp_path, name, capsys):
    write_cityscapes(tmp_path / "cityscapes", size=(32, 64))
    torch.manual_seed(0)
    model = create_model(name, num_classes=19)
    for module in model.modules():  # non-trivial BN statistics, as after training
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    sar = SemanticAnchorRegularizer(19, model.feat_dim)
    official = official_checkpoint(model, sar)
    torch.save(official, tmp_path / "official.pth")
    run = tmp_path / "run"
    overrides = [
        f"model.name={name}", f"data.root={tmp_path / 'cityscapes'}", "data.num_workers=0",
        "data.crop_size=[32, 64]", "data.transforms={base_size: [64, 32]}",
        "trainer.accelerator=cpu", "trainer.devices=1", "trainer.strategy=auto",
        "trainer.sync_batchnorm=false", "trainer.progress_bar=false",
    ]  # fmt: skip
    assert main(["convert-official", str(tmp_path / "official.pth"), "--recipe",
                 "cityscapes-fcn-hr48", "--out", str(run), "--set", *overrides]) == 0  # fmt: skip
    assert f"semantic-anchors eval {run}" in capsys.readouterr().out

    ckpt = load_checkpoint(run / "checkpoints/last.ckpt")
    assert ckpt["global_step"] == 1234
    state = ckpt["state_dict"]
    src = official["state_dict"]
    assert torch.equal(state["regularizer.anchors"], src["random_center"])
    assert torch.equal(state["regularizer.semantic_anchors"], src["momentum_center_feat"])
    assert state["regularizer.initialized"].all()
    assert torch.equal(
        state["regularizer.embedding.conv.1.running_var"], src["projecter.bn.running_var"]
    )
    for key, value in model.state_dict().items():
        assert torch.equal(state[f"model.{key}"], value), key

    metrics = evaluate(run)
    assert metrics["step"] == 1234 and metrics["mIoU"] is not None
    with pytest.raises(ValueError, match="converted from an official checkpoint"):
        train(None, [], resume=run)


def test_unknown_official_keys_are_named():
    with pytest.raises(ValueError, match=r"neither mmseg segmentor keys .*'neck.conv.weight'"):
        map_official_state({"backbone.w": torch.ones(1), "neck.conv.weight": torch.ones(1)})
