"""ONNX export: onnxruntime computes the PyTorch logits of the zoo models at any batch and size.

The random-init models get batch-norm statistics of a forward pass in training mode first (their
init statistics are 0 / 1, and the deep ones then give logits of 1e6): the logits are O(1),
like a trained model's. The tolerance: max |onnxruntime - torch| <= ``RTOL`` * max(1, max
|torch|). Measured max abs differences (2-core CPU, torch 2.13, onnxruntime 1.31, one thread;
logits up to 0.16, 1.3, 5.5, 0.98): fcn_small 3.9e-7, fcn_hr18 2.4e-5, deeplabv3_r50_d8 4.4e-4,
segformer_b0 6.9e-7.
"""

from __future__ import annotations

import doctest
import json

import onnx
import pytest
import torch

import semantic_anchors.models.io.onnx as onnx_io
from semantic_anchors.models import create_model
from semantic_anchors.models.io.onnx import (
    ONNX_FORMAT,
    TRACE_SIZE,
    OnnxModel,
    export_onnx,
    read_onnx_metadata,
)

RTOL = 5e-4  # max |onnxruntime - torch| / max(1, max |torch|): float32 on both sides
ATOL = 1e-4  # a classifier's logits (small_cnn: O(0.1))
SIZES = ((1, (64, 64)), (2, (48, 80)))  # (batch, (H, W)): two sizes, two batches, none traced


def _calibrated(name: str, num_classes: int = 5) -> torch.nn.Module:
    model = create_model(name, num_classes=num_classes)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # the statistics of this one batch
    model.train()
    with torch.no_grad():
        model(torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
    return model.eval()


@pytest.mark.parametrize("name", ["fcn_small", "fcn_hr18", "deeplabv3_r50_d8", "segformer_b0"])
def test_onnxruntime_gives_the_pytorch_logits_at_other_sizes_and_batches(name, tmp_path):
    model = _calibrated(name)
    file = export_onnx(model, tmp_path / "m.onnx", in_channels=3, metadata={}, verify=False)
    session = OnnxModel(file, threads=1)
    gen = torch.Generator().manual_seed(1)
    for batch, (h, w) in SIZES:
        images = torch.randn(batch, 3, h, w, generator=gen)  # (B, 3, H, W)
        with torch.no_grad():
            expected = model(images)  # (B, 5, H, W)
        got = session(images)
        assert got.shape == (batch, 5, h, w)
        assert 0.05 < float(expected.abs().max()) < 100  # calibrated: the tolerance is meaningful
        diff, scale = float((got - expected).abs().max()), float(expected.abs().max())
        assert diff <= RTOL * max(1.0, scale), f"{name} at {h}x{w}: max abs difference {diff:.3g}"


def test_the_graph_has_dynamic_axes_and_no_regularizer(tmp_path):
    file = export_onnx(create_model("fcn_small", num_classes=3), tmp_path / "m.onnx",
                       in_channels=3, metadata={})  # fmt: skip
    graph = onnx.load(str(file)).graph
    (inp,), (out,) = graph.input, graph.output
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert inp.name == "images" and dims == ["batch", 3, "height", "width"]
    assert [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim] == [
        "batch", 3, "height", "width"
    ]  # fmt: skip
    assert not any("anchor" in i.name or "regularizer" in i.name for i in graph.initializer)
    assert onnx.load(str(file)).opset_import[0].version == onnx_io.OPSET


def test_a_classifier_has_a_dynamic_batch_only_output(tmp_path):
    model = create_model("small_cnn", num_classes=4, in_channels=1).eval()
    file = export_onnx(model, tmp_path / "c.onnx", in_channels=1, metadata={})
    images = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(OnnxModel(file)(images), model(images), atol=ATOL)


def test_metadata_round_trips_json_encoded(tmp_path):
    metadata = {"task": "segmentation", "num_classes": 3, "class_names": ["a", "b", "c"],
                "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.2, 0.2], "eval": {"mode": "whole",
                "crop_size": None}}  # fmt: skip
    file = export_onnx(create_model("fcn_small", num_classes=3), tmp_path / "m.onnx",
                       in_channels=3, metadata=metadata)  # fmt: skip
    assert read_onnx_metadata(file) == {"format": ONNX_FORMAT, **metadata}
    props = {p.key: p.value for p in onnx.load(str(file)).metadata_props}
    assert json.loads(props["class_names"]) == ["a", "b", "c"]  # readable by any ONNX tool
    assert not list(tmp_path.glob(".*"))  # written atomically: no temporary file left


class _OddWidthBranch(torch.nn.Module):
    """A forward that branches on the input's width: the trace records one branch only."""

    dense = True

    def forward(self, x):
        return x * 2 if x.shape[-1] % 2 else x


class _Unsupported(torch.nn.Module):
    dense = True

    def forward(self, x):
        return torch.fft.rfft2(x).abs()  # complex numbers: no ONNX operator


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (_OddWidthBranch(), "disagrees with the model at 64x96"),
        (_Unsupported(), "cannot be exported to ONNX: UnsupportedOperatorError"),
    ],
)
def test_a_model_that_cannot_export_says_why_and_leaves_no_file(model, message, tmp_path, capfd):
    with pytest.raises(ValueError, match=message):
        export_onnx(model, tmp_path / "m.onnx", in_channels=3, metadata={}, name="bad")
    assert not list(tmp_path.iterdir())
    out, err = capfd.readouterr()
    assert "Torch IR graph" not in out + err  # the exporter's dump is silenced


def test_the_trace_size_is_odd_at_every_stride_up_to_16():
    for side in TRACE_SIZE:
        assert all(-(-side // s) % 2 == 1 for s in (1, 2, 4, 8, 16)), side


def test_files_that_are_not_exported_models_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no ONNX model at"):
        OnnxModel(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf")
    with pytest.raises(ValueError, match="junk.onnx is not a readable ONNX model"):
        OnnxModel(tmp_path / "junk.onnx")
    plain = tmp_path / "plain.onnx"  # a valid ONNX file of someone else's
    with torch.no_grad(), pytest.warns(DeprecationWarning):
        torch.onnx.export(torch.nn.ReLU(), (torch.randn(1, 3),), str(plain), dynamo=False)
    with pytest.raises(ValueError, match="not an ONNX model exported by semantic-anchors"):
        read_onnx_metadata(plain)


def test_a_missing_extra_names_it(monkeypatch):
    import builtins

    real = builtins.__import__

    def refuse(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError("no onnxruntime")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", refuse)
    with pytest.raises(ModuleNotFoundError, match=r"semantic-anchors\[onnx\]"):
        onnx_io.import_onnx()


def test_docstring_examples_run():
    result = doctest.testmod(onnx_io, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
