"""Anchor-aware inference: anchor logits, the fused model, its evaluation and its export."""

from __future__ import annotations

import doctest
import json
import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import semantic_anchors.anchor_inference as anchor_inference
from semantic_anchors import FixedAnchorRegularizer, SemanticAnchorRegularizer
from semantic_anchors.anchor_inference import AnchorFusedModel, anchor_logits
from semantic_anchors.cli import main
from semantic_anchors.inference import slide_logits
from semantic_anchors.models import create_model, load_exported
from semantic_anchors.models.layers import upsample_like
from semantic_anchors.train import evaluate, train
from semantic_anchors.train.checkpoint import load_checkpoint
from semantic_anchors.train.config import load_config
from semantic_anchors.train.data import AnchorDataModule
from semantic_anchors.train.module import AnchorModule
from tests._helpers.runs import TINY

# SAR settings under which the gate opens within a few steps (here at the 5th of 8).
SAR_EARLY_GATE = ["regularizer.name=sar", "regularizer.delta=0.05", "optimizer.lr=0.05"]


def reference_anchor_logits(features, anchors, metric, temperature):
    """Slow and obvious: every pixel against every class, in float64."""
    dense = features.dim() == 4
    f = features.double() if dense else features.double()[:, :, None, None]  # (B, D, h, w)
    a = anchors.double()
    b, d, h, w = f.shape
    t = temperature if temperature is not None else (d if metric == "l2" else 0.1)
    out = torch.empty(b, a.shape[0], h, w, dtype=torch.float64)
    for i in range(b):
        for y in range(h):
            for x in range(w):
                v = f[i, :, y, x]
                for c in range(a.shape[0]):
                    if metric == "l2":
                        out[i, c, y, x] = -((v - a[c]) ** 2).sum() / t
                    else:
                        out[i, c, y, x] = (v @ a[c]) / (v.norm() * a[c].norm()) / t
    return out if dense else out[:, :, 0, 0]


@pytest.mark.parametrize("metric", ["l2", "cosine"])
@pytest.mark.parametrize("dense", [True, False])
@pytest.mark.parametrize("temperature", [None, 0.5])
def test_anchor_logits_match_a_loop_over_pixels_and_classes(metric, dense, temperature):
    gen = torch.Generator().manual_seed(0)
    shape = (2, 6, 3, 4) if dense else (5, 6)
    features = torch.randn(shape, generator=gen)
    anchors = torch.randn(4, 6, generator=gen)
    features.view(shape[0], 6, -1)[0, :, 0] = anchors[2]  # a feature on an anchor: distance 0
    out = anchor_logits(features, anchors, metric=metric, temperature=temperature)
    expected = reference_anchor_logits(features, anchors, metric, temperature)
    assert out.dtype == torch.float32 and out.shape == expected.shape
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)
    if metric == "l2":
        assert out.max() <= 0  # a distance is never negative, even with the square expanded


def test_anchor_logits_run_in_float32_at_least():
    features, anchors = torch.randn(2, 8, 4, 4), torch.randn(3, 8)
    expected = anchor_logits(features, anchors)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = anchor_logits(features, anchors)
    assert torch.equal(under_autocast, expected)
    half = anchor_logits(features.bfloat16(), anchors)
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, expected, rtol=0.05, atol=0.05)
    assert anchor_logits(features.double(), anchors).dtype == torch.float64


def test_anchor_logits_refuse_bad_input():
    features, anchors = torch.randn(2, 8, 4, 4), torch.randn(3, 8)
    with pytest.raises(ValueError, match=r"`anchors` must be a floating-point \(C, D=8\)"):
        anchor_logits(features, torch.randn(3, 7))
    with pytest.raises(ValueError, match="`features` must be a floating-point"):
        anchor_logits(torch.randn(2, 8, 4), anchors)
    with pytest.raises(ValueError, match=r"`metric` must be one of \['l2', 'cosine'\]"):
        anchor_logits(features, anchors, metric="dot")
    for bad in (-1.0, 0.0, math.inf):
        with pytest.raises(ValueError, match="`temperature` must be a finite float > 0"):
            anchor_logits(features, anchors, temperature=bad)


class TwoPixelModel(nn.Module):
    """Features = the 2x2-pooled input (D = 2); the classifier ignores them and favours class 0."""

    dense, num_classes, feat_dim = True, 3, 2

    def __init__(self) -> None:
        super().__init__()
        self.classifier = nn.Conv2d(2, 3, 1)
        with torch.no_grad():
            self.classifier.weight.zero_()
            self.classifier.bias.copy_(torch.tensor([1.0, 0.0, 0.0]))

    def forward_features(self, x):
        return F.avg_pool2d(x, 2)  # (B, 2, H / 2, W / 2)

    def forward_head(self, features):
        return self.classifier(features)  # (B, 3, h, w)

    def forward(self, x):
        return upsample_like(self.forward_head(self.forward_features(x)), x)


def test_fusion_moves_predictions_to_the_nearest_anchor_in_a_hand_built_case():
    anchors = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])  # (C=3, D=2)
    x = torch.zeros(1, 2, 4, 4)
    x[0, :, :2, :2] = anchors[1, :, None, None]  # feature pixel (0, 0) sits on anchor 1
    x[0, :, 2:, 2:] = anchors[2, :, None, None]  # feature pixel (1, 1) sits on anchor 2
    x[0, :, :2, 2:] = anchors[0, :, None, None]  # feature pixel (0, 1) sits on anchor 0
    model = TwoPixelModel()
    assert (model(x).argmax(1) == 0).all()  # the classifier alone says class 0 everywhere
    fused = AnchorFusedModel(model, anchors, beta=3.0)
    feats = model.forward_features(x)
    # l2, T = D = 2; pixel on anchor 1: distances (2, 0, 2) -> 1 + 3 * (-1, 0, -1) + (0, 0, 0).
    logits = fused.forward_head(feats)
    assert logits[0, :, 0, 0].tolist() == [-2.0, 0.0, -3.0]
    assert logits[0, :, 1, 1].tolist() == [1.0 - 6.0, -3.0, 0.0]  # distances (4, 2, 0)
    assert logits.argmax(1).tolist() == [[[1, 0], [0, 2]]]  # (1, 0) is the origin: a tie -> 0
    assert torch.equal(fused(x), upsample_like(logits, x))
    cosine = AnchorFusedModel(model, anchors, beta=3.0, metric="cosine")
    assert cosine.forward_head(feats).argmax(1)[0, 0, 0] == 1
    assert cosine.forward_head(feats).argmax(1)[0, 1, 1] == 2


@pytest.mark.parametrize("name", ["fcn_small", "small_cnn"])
def test_beta_zero_is_the_model_bitwise_and_a_large_beta_the_nearest_anchor(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=5, in_channels=3).eval()
    anchors = torch.randn(5, model.feat_dim)
    x = torch.randn(2, 3, 32, 32)
    fused = AnchorFusedModel(model, anchors, beta=0.0)
    with torch.no_grad():
        assert torch.equal(fused(x), model(x))
        fused.beta = 1e6
        feats = model.forward_features(x)  # (B, D, h, w) or (B, D)
        flat = feats.movedim(1, -1).reshape(-1, model.feat_dim)  # (N, D)
        nearest = torch.cdist(flat, anchors).argmin(1)  # (N,)
        predicted = fused.forward_head(feats).movedim(1, -1).reshape(-1, 5).argmax(1)  # (N,)
        assert torch.equal(predicted, nearest)
        assert fused(x).shape == model(x).shape
        assert not torch.equal(fused(x).argmax(1), model(x).argmax(1))


def test_fused_model_takes_the_semantic_anchors_of_sar():
    model = create_model("fcn_small", num_classes=4).eval()
    sar = SemanticAnchorRegularizer(4, model.feat_dim)
    sar.semantic_anchors.normal_()
    sar.initialized.fill_(True)
    fused = AnchorFusedModel(model, sar, beta=0.5)
    assert torch.equal(fused.anchors, sar.semantic_anchors)
    assert fused.anchors.data_ptr() != sar.semantic_anchors.data_ptr()  # a snapshot
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = model.forward_head(feats := model.forward_features(x))
        expected = upsample_like(expected + 0.5 * anchor_logits(feats, sar.semantic_anchors), x)
        assert torch.equal(fused(x), expected)


def test_fused_model_refuses_bad_anchors_and_options():
    model = create_model("fcn_small", num_classes=4).eval()
    sar = SemanticAnchorRegularizer(4, model.feat_dim)
    with pytest.raises(ValueError, match=r"classes 0, 1, 2, 3; train longer"):
        AnchorFusedModel(model, sar)  # the gate never opened
    sar.initialized[[0, 2]] = True
    with pytest.raises(ValueError, match=r"2 of 4 classes were never initialized.*1 \('b'\), 3"):
        AnchorFusedModel(model, sar, class_names=["a", "b", "c", "d"])
    with pytest.raises(
        ValueError, match="needs a SemanticAnchorRegularizer.*FixedAnchorRegularizer"
    ):
        AnchorFusedModel(model, FixedAnchorRegularizer(4, model.feat_dim))
    with pytest.raises(ValueError, match=r"\(C, D\) = \(4, 64\).*got shape \(4, 32\)"):
        AnchorFusedModel(model, torch.randn(4, 32))
    with pytest.raises(ValueError, match="must be finite"):
        AnchorFusedModel(model, torch.full((4, 64), math.nan))
    with pytest.raises(TypeError, match="must be a SemanticAnchorRegularizer or a"):
        AnchorFusedModel(model, [[0.0] * 64] * 4)
    with pytest.raises(TypeError, match="forward_features"):
        AnchorFusedModel(nn.Linear(64, 4), torch.randn(4, 64))
    anchors = torch.randn(4, 64)
    with pytest.raises(ValueError, match="`beta` must lie in"):
        AnchorFusedModel(model, anchors, beta=-0.5)
    with pytest.raises(ValueError, match="`temperature` must be a finite float > 0"):
        AnchorFusedModel(model, anchors, temperature=-1.0)
    with pytest.raises(ValueError, match="`metric` must be one of"):
        AnchorFusedModel(model, anchors, metric="manhattan")


def test_docstring_examples_run():
    result = doctest.testmod(anchor_inference, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0


def test_config_keys_are_validated():
    ev = load_config("synthlt-fcn-quick")["eval"]
    assert (ev["anchor_fusion"], ev["anchor_metric"], ev["anchor_temperature"]) == (0.0, "l2", None)
    for override, message in [
        ("eval.anchor_fusion=-1", "eval.anchor_fusion must be >= 0, got -1"),
        ("eval.anchor_fusion=.inf", "eval.anchor_fusion must be >= 0"),
        ("eval.anchor_metric=dot", "eval.anchor_metric must be one of ('l2', 'cosine'), got 'dot'"),
        ("eval.anchor_temperature=0", "eval.anchor_temperature must be > 0 or null, got 0"),
        ("eval.anchor_fusion=high", "eval.anchor_fusion must be a number, got 'high'"),
    ]:
        with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
            load_config("synthlt-fcn-quick", [override])


# ----------------------------------------------------------------------------- a trained run
@pytest.fixture(scope="module")
def sar_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("anchor") / "run"
    train("synthlt-fcn-quick", [*TINY, "trainer.max_steps=8", *SAR_EARLY_GATE], out_dir=run)
    assert load_checkpoint(run / "checkpoints/last.ckpt")["state_dict"][
        "regularizer.initialized"
    ].all()  # the gate opened: there are semantic anchors to use
    return run


def trained_module(run, overrides=()):
    ckpt = load_checkpoint(run / "checkpoints/last.ckpt")
    config = load_config(ckpt["semantic_anchors"]["config"], list(overrides))
    module = AnchorModule(config, ckpt["semantic_anchors"]["data_info"])
    module.load_state_dict(ckpt["state_dict"])
    images = next(iter(AnchorDataModule(config["data"], 0).val_dataloader()))[0]
    return module.eval(), images


def test_eval_with_fusion_zero_is_plain_eval_and_with_fusion_gives_valid_metrics(
    sar_run, tmp_path, capsys
):
    plain = evaluate(sar_run)
    assert evaluate(sar_run, ["eval.anchor_fusion=0"]) == plain
    out = tmp_path / "fused.json"
    assert main(["eval", str(sar_run), "--set", "eval.anchor_fusion=0.5", "--json", str(out)]) == 0
    assert "mIoU" in capsys.readouterr().out
    fused = evaluate(sar_run, ["eval.anchor_fusion=0.5", "eval.anchor_metric=cosine"])
    for metrics in (fused, json.loads(out.read_text())):
        assert 0 <= metrics["mIoU"] <= 100 and 0 <= metrics["aAcc"] <= 100
        assert len(metrics["IoU"]) == 13 and metrics["step"] == plain["step"]


@pytest.mark.parametrize("slide", [False, True])
def test_module_forward_uses_the_fused_model(sar_run, slide):
    extra = ["eval.mode=slide", "eval.crop_size=40", "eval.stride=24"] if slide else []
    module, images = trained_module(sar_run, ["eval.anchor_fusion=0.5", *extra])
    fused = AnchorFusedModel(module.model, module.regularizer, beta=0.5).eval()
    with torch.no_grad():
        expected = slide_logits(fused, images, 13, 40, 24) if slide else fused(images)
        assert torch.equal(module(images), expected)
        assert not torch.equal(module(images), module.model(images) if not slide else
                               slide_logits(module.model, images, 13, 40, 24))  # fmt: skip


def test_fusion_needs_sar_and_an_opened_gate(sar_run, tmp_path, capsys):
    module, images = trained_module(sar_run, ["eval.anchor_fusion=0.5"])
    plain = AnchorModule({**module.config, "regularizer": {"name": "none"}}, module.data_info)
    with pytest.raises(ValueError, match="regularizer is 'none'; set eval.anchor_fusion=0"):
        plain(images)

    # A checkpoint whose gate never opened: the classes are named, through the CLI too.
    ckpt = load_checkpoint(sar_run / "checkpoints/last.ckpt")
    ckpt["state_dict"]["regularizer.initialized"][[1, 4]] = False
    closed = tmp_path / "closed.ckpt"
    torch.save(ckpt, closed)
    names = ckpt["semantic_anchors"]["data_info"]["class_names"]
    assert main(["eval", str(closed), "--set", "eval.anchor_fusion=0.5"]) == 2
    err = capsys.readouterr().err
    assert f"classes 1 ({names[1]!r}), 4 ({names[4]!r})" in err and "never initialized" in err
    assert main(["eval", str(closed)]) == 0  # without fusion it is a normal run
    assert main(["export", str(closed), "--out", str(tmp_path / "m.pt"), "--with-anchors"]) == 2
    assert "--with-anchors" in capsys.readouterr().err and not (tmp_path / "m.pt").exists()


def test_export_with_anchors_rebuilds_the_fused_model(sar_run, tmp_path, capsys):
    plain_file, anchor_file = tmp_path / "plain.pt", tmp_path / "anchors.pt"
    assert main(["export", str(sar_run), "--out", str(plain_file)]) == 0
    assert main(["export", str(sar_run), "--out", str(anchor_file), "--with-anchors"]) == 0
    assert "with SAR's semantic anchors" in capsys.readouterr().out
    plain_payload = torch.load(plain_file, weights_only=True)
    payload = torch.load(anchor_file, weights_only=True)
    assert "semantic_anchors" not in plain_payload  # without the flag: the export of before
    assert set(payload) - set(plain_payload) == {"semantic_anchors"}
    assert payload["semantic_anchors"].shape == (13, 64)

    module, images = trained_module(sar_run)
    expected = AnchorFusedModel(module.model, module.regularizer, beta=0.5, metric="cosine")
    loaded = load_exported(anchor_file, anchor_fusion=0.5, anchor_metric="cosine")
    assert isinstance(loaded, AnchorFusedModel) and not loaded.training
    assert torch.equal(loaded.anchors, module.regularizer.semantic_anchors)
    with torch.no_grad():
        assert torch.equal(loaded(images), expected.eval()(images))
        assert torch.equal(load_exported(anchor_file)(images), module.model(images))
        assert torch.equal(
            load_exported(anchor_file, anchor_fusion=0.0)(images), module.model(images)
        )
    with pytest.raises(ValueError, match="holds no semantic anchors; export it with"):
        load_exported(plain_file, anchor_fusion=0.5)

    ckpt = load_checkpoint(sar_run / "checkpoints/last.ckpt")  # as if trained without SAR
    ckpt["semantic_anchors"]["config"]["regularizer"] = {"name": "none"}
    ckpt["state_dict"] = {k: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    torch.save(ckpt, tmp_path / "none.ckpt")
    assert main(["export", str(tmp_path / "none.ckpt"), "--out", str(tmp_path / "x.pt"),
                 "--with-anchors"]) == 2  # fmt: skip
    assert "regularizer 'none', which has no semantic anchors" in capsys.readouterr().err


def test_training_with_fusion_validates_the_plain_model_until_the_gate_opens(tmp_path):
    """The validations of a run whose gate never opens (delta = 1) use the plain model, the
    one inside fit and the final one after it alike: training is never lost to the fusion."""
    run = tmp_path / "run"
    fused_config = ["regularizer.name=sar", "regularizer.delta=1.0", "eval.anchor_fusion=0.5"]
    metrics = train("synthlt-fcn-quick", [*TINY, "trainer.max_steps=3", "trainer.val_every=2",
                    *fused_config], out_dir=run)  # fmt: skip
    assert metrics["steps"] == 3 and metrics["mIoU"] is not None
    assert load_checkpoint(run / "checkpoints/last.ckpt")["global_step"] == 3
    with pytest.raises(ValueError, match="of 13 classes were never initialized"):
        evaluate(run)  # re-evaluating it with the fusion is an error that names the classes
    assert evaluate(run, ["eval.anchor_fusion=0"])["mIoU"] == pytest.approx(metrics["mIoU"])
