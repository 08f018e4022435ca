"""``export``: the plain model of a run, without SAR's state, computing the same logits."""

import pytest
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


def test_the_exported_file_holds_the_runs_inference_settings(tiny_run, tmp_path):
    from semantic_anchors.train.inference_settings import inference_settings

    ckpt = load_checkpoint(tiny_run / "checkpoints/last.ckpt")
    expected = inference_settings(load_config(ckpt["semantic_anchors"]["config"]),
                                  ckpt["semantic_anchors"]["data_info"])  # fmt: skip
    assert main(["export", str(tiny_run), "--out", str(tmp_path / "model.pt")]) == 0
    assert load_exported(tmp_path / "model.pt").inference == expected
    assert expected["mean"] == [0.5, 0.5, 0.5] and expected["eval"]["mode"] == "whole"


def test_onnx_export_of_a_run_computes_its_logits_and_describes_it(tiny_run, tmp_path, capsys):
    from semantic_anchors.models.io.onnx import OnnxModel

    out = tmp_path / "model.onnx"
    assert main(["export", str(tiny_run), "--format", "onnx", "--out", str(out)]) == 0
    assert "load it with onnxruntime" in capsys.readouterr().out
    graph = OnnxModel(out)
    plain = load_exported(_torch_export(tiny_run, tmp_path))
    meta = graph.metadata
    assert meta["model"] == "fcn_small" and meta["task"] == "segmentation"
    assert meta["num_classes"] == 13 and meta["class_names"] == plain.class_names
    assert meta["mean"] == [0.5] * 3 and meta["std"] == [0.25] * 3  # synthlt's normalisation
    assert {k: meta[k] for k in plain.inference} == plain.inference
    images = torch.randn(3, 3, 40, 56)
    with torch.no_grad():
        assert (graph(images) - plain(images)).abs().max() < 1e-4


def _torch_export(run, folder):
    from semantic_anchors.train.export import export_run

    return export_run(run, folder / "model.pt")


def test_onnx_export_refuses_what_it_cannot_hold(tiny_run, tmp_path, capsys):
    from semantic_anchors.train.export import export_run

    argv = ["export", str(tiny_run), "--format", "onnx", "--with-anchors", "--out", "m.onnx"]
    assert main(argv) == 2
    assert "--with-anchors: the semantic anchors are stored by --format torch only" in (
        capsys.readouterr().err
    )
    with pytest.raises(ValueError, match="format: expected one of"):
        export_run(tiny_run, tmp_path / "m.x", format="tflite")
    assert not list(tmp_path.iterdir())
