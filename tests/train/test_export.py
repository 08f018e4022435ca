"""``export``: the plain model of a run, without SAR's state, computing the same logits."""

import torch

from semantic_anchors.cli import main
from semantic_anchors.models import load_exported
from semantic_anchors.train import train
from semantic_anchors.train.checkpoint import load_checkpoint
from semantic_anchors.train.config import load_config
from semantic_anchors.train.data import AnchorDataModule
from semantic_anchors.train.module import AnchorModule
from tests._helpers.runs import TINY


def test_exported_model_equals_the_trained_one_and_holds_no_sar_state(tmp_path, capsys):
    run = tmp_path / "run"
    train("synthlt-fcn-quick", [*TINY, "trainer.max_steps=3", "regularizer.name=sar",
          "regularizer.delta=0.2"], out_dir=run)  # fmt: skip
    assert main(["export", str(run), "--out", str(tmp_path / "model.pt")]) == 0
    assert "exported the model" in capsys.readouterr().out
    exported = load_exported(tmp_path / "model.pt")
    assert not exported.training
    payload = torch.load(tmp_path / "model.pt", weights_only=True)
    assert not any("regularizer" in k or "anchor" in k for k in payload["state_dict"])

    # The trained module, rebuilt from the checkpoint independently of the exporter.
    ckpt = load_checkpoint(run / "checkpoints/last.ckpt")
    config = load_config(ckpt["semantic_anchors"]["config"])
    module = AnchorModule(config, ckpt["semantic_anchors"]["data_info"])
    module.load_state_dict(ckpt["state_dict"])
    assert module.regularizer is not None
    module.eval()
    images = next(iter(AnchorDataModule(config["data"], 0).val_dataloader()))[0]
    with torch.no_grad():
        assert torch.equal(exported(images), module.model(images))
    trained_params = sum(p.numel() for p in module.parameters())
    exported_params = sum(p.numel() for p in exported.parameters())
    assert exported_params == trained_params - sum(
        p.numel() for p in module.regularizer.parameters()
    )
    assert exported.class_names == ckpt["semantic_anchors"]["data_info"]["class_names"]
