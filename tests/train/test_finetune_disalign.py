"""DisAlign (Zhang et al., CVPR 2021): GRW weights and loss, the adaptive calibration, the frozen
stage 2 and a two-stage run through ``semantic_anchors.train.train`` (classification and
segmentation)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from semantic_anchors.calibration import (
    CALIBRATIONS,
    CalibratedModel,
    DisAlignCalibration,
    build_calibration,
)
from semantic_anchors.losses import build_loss
from semantic_anchors.losses.grw import GRWCrossEntropyLoss, grw_weights
from semantic_anchors.models import create_model
from tests._helpers.twostage import (
    build_module,
    changed,
    classification_overrides,
    fashion_root,
    one_step,
    segmentation_overrides,
    snapshot,
)

FREQS = [600.0, 150.0, 40.0, 10.0]
STAGE2 = ["finetune.train_only=[calibration]", "finetune.calibration=disalign", "loss.name=grw"]


# ----------------------------------------------------------------------------- GRW
def test_grw_weights_by_hand():
    # r = (0.8, 0.2); r ** -1 = (1.25, 5); normalised to sum C = 2: (0.4, 1.6).
    assert grw_weights([8, 2], 1.0).tolist() == pytest.approx([0.4, 1.6])
    total = sum(FREQS)
    raw = [(f / total) ** -1.2 for f in FREQS]
    expected = [4 * w / sum(raw) for w in raw]
    assert grw_weights(FREQS, 1.2).tolist() == pytest.approx(expected, rel=1e-12)
    assert grw_weights(FREQS, 0.0).tolist() == pytest.approx([1.0] * 4)  # plain CE


def test_grw_weights_of_an_unseen_class_are_zero_and_the_others_average_one():
    weights = grw_weights([30.0, 0.0, 10.0], 1.0)
    assert weights[1] == 0 and weights[[0, 2]].mean() == pytest.approx(1.0)


def _grw_loop(logits, targets, weights, reduction, ignore=255):
    """Slow reference: one target at a time."""
    logits = logits.movedim(1, -1).reshape(-1, logits.shape[1]).double()  # (N, C)
    total, norm = 0.0, 0.0
    for row, y in zip(logits, targets.reshape(-1).tolist(), strict=True):
        if y == ignore:
            continue
        total += float(weights[y]) * -float(torch.log_softmax(row, 0)[y])
        norm += float(weights[y]) if reduction == "weighted-mean" else 1.0
    return total / max(norm, 1e-300)


@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("reduction", [None, "weighted-mean", "mean"])
def test_grw_loss_against_a_loop(dense, reduction):
    torch.manual_seed(0)
    shape = (3, 4, 5, 5) if dense else (20, 4)
    logits = torch.randn(*shape, dtype=torch.float64)
    targets = torch.randint(0, 4, (shape[0], *shape[2:]))
    targets.view(-1)[:3] = 255
    loss = GRWCrossEntropyLoss(4, FREQS, reduction=reduction)
    rho = 0.2 if dense else 1.2  # the authors' defaults by task
    expected_reduction = reduction or ("mean" if dense else "weighted-mean")
    expected = _grw_loop(logits, targets, grw_weights(FREQS, rho), expected_reduction)
    assert float(loss(logits, targets)) == pytest.approx(expected, rel=1e-6)  # float32 w


def test_grw_rho_zero_is_cross_entropy_and_registry_builds_it():
    logits, targets = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 255, 1])
    loss = build_loss("grw", num_classes=4, class_frequencies=FREQS, rho=0.0)
    assert isinstance(loss, GRWCrossEntropyLoss)
    torch.testing.assert_close(
        loss(logits, targets), F.cross_entropy(logits, targets, ignore_index=255)
    )
    with pytest.raises(ValueError, match=r"`reduction` must be one of"):
        GRWCrossEntropyLoss(4, FREQS, reduction="sum")


# ----------------------------------------------------------------------------- calibration
@pytest.mark.parametrize("dense", [False, True])
def test_calibration_formula_by_hand(dense):
    """s_hat_c = (1 + sigma * alpha_c) * s_c + sigma * beta_c, per image / per pixel."""
    torch.manual_seed(1)
    cal = DisAlignCalibration(3, 5, dense=dense, gate="linear").double()
    with torch.no_grad():
        cal.alpha.copy_(torch.tensor([0.5, -0.2, 2.0]))
        cal.beta.copy_(torch.tensor([0.1, 0.3, -1.0]))
    features = torch.randn(2, 5, 3, 3) if dense else torch.randn(4, 5)
    features, logits = features.double(), torch.randn(features.shape[0], 3, *features.shape[2:])
    logits = logits.double()
    out = cal(features, logits).detach()
    cal.requires_grad_(False)
    weight, bias = cal.gate.weight.reshape(-1), cal.gate.bias  # (D,), (1,)
    flat_f = features.movedim(1, -1).reshape(-1, 5)
    flat_s, flat_out = (t.movedim(1, -1).reshape(-1, 3) for t in (logits, out))
    for f, s, got in zip(flat_f, flat_s, flat_out, strict=True):
        sigma = 1 / (1 + math.exp(-float(f @ weight + bias)))
        for c in range(3):
            want = (1 + sigma * float(cal.alpha[c])) * float(s[c]) + sigma * float(cal.beta[c])
            assert float(got[c]) == pytest.approx(want, rel=1e-12)


def test_the_authors_segmentation_form_is_the_same_map():
    """mmseg's head: sigma * (scale * s + b) + (1 - sigma) * s, with scale = 1 + alpha."""
    cal = DisAlignCalibration(4, 6, dense=True).eval()  # conv-bn-relu gate, identity at init
    features, logits = torch.randn(2, 6, 3, 3), torch.randn(2, 4, 3, 3)
    torch.testing.assert_close(cal(features, logits), logits)
    with torch.no_grad():
        cal.alpha.uniform_(-1, 1)
        cal.beta.uniform_(-1, 1)
    sigma = torch.sigmoid(F.relu(cal.gate[1](cal.gate[0](features))))  # (B, 1, h, w) >= 0.5
    assert bool((sigma >= 0.5).all())
    scale, bias = (1 + cal.alpha).view(1, -1, 1, 1), cal.beta.view(1, -1, 1, 1)
    authors = sigma * (logits * scale + bias) + (1 - sigma) * logits
    torch.testing.assert_close(cal(features, logits), authors)


def test_classification_defaults_follow_the_authors_layer():
    cal = DisAlignCalibration(3, 4, dense=False)
    assert cal.gate_kind == "linear" and torch.equal(cal.alpha, torch.ones(3))
    assert torch.equal(cal.gate.weight, torch.full((1, 4), 0.1)) and torch.equal(
        cal.beta, torch.zeros(3)
    )


def test_calibrated_model_matches_the_manual_composition():
    torch.manual_seed(0)
    model = create_model("fcn_small", num_classes=4, in_channels=1).eval()
    cal = DisAlignCalibration(4, model.feat_dim, dense=True, alpha_init=0.3).eval()
    x = torch.randn(2, 1, 32, 32)
    features = model.forward_features(x)
    expected = F.interpolate(
        cal(features, model.forward_head(features)), size=(32, 32), mode="bilinear",
        align_corners=False,
    )  # fmt: skip
    wrapped = CalibratedModel(model, cal)
    torch.testing.assert_close(wrapped(x), expected)
    out = wrapped.forward_train(x)
    torch.testing.assert_close(out.logits, expected)
    assert out.aux_logits is None and torch.equal(out.features, features)


def test_the_config_takes_the_calibration_names_exactly():
    from semantic_anchors.train.config import load_config

    for name in CALIBRATIONS.names():
        load_config("fashion-lt-smallcnn-quick", [f"finetune.calibration={name}"])
    for bad in ("DisAlign", "disalgn"):
        with pytest.raises(
            ValueError, match=r"finetune.calibration .*null or one of \('disalign', 'lws'\)"
        ):
            load_config("fashion-lt-smallcnn-quick", [f"finetune.calibration={bad}"])


def test_build_calibration_names_and_bad_options():
    assert build_calibration("none", 3, 4, dense=False) is None
    assert isinstance(build_calibration("DisAlign", 3, 4, dense=False), DisAlignCalibration)
    with pytest.raises(ValueError, match=r"unknown calibration 'disalgn' \(did you mean disalign"):
        build_calibration("disalgn", 3, 4, dense=False)
    with pytest.raises(ValueError, match=r"does not take option\(s\) \['gamma'\]"):
        build_calibration("disalign", 3, 4, dense=False, gamma=1)
    with pytest.raises(ValueError, match=r"features` must have shape \(2, 4\)"):
        DisAlignCalibration(3, 4, dense=False)(torch.randn(2, 5), torch.randn(2, 3))


# ----------------------------------------------------------------------------- stage 2
@pytest.mark.parametrize("task", ["classification", "segmentation"])
def test_a_stage2_step_changes_only_the_calibration(task):
    """Backbone, heads, classifier and their BN statistics stay; the calibration moves."""
    torch.manual_seed(0)
    module = build_module([*STAGE2, "optimizer.lr=0.5"], task)
    dense = task == "segmentation"
    images = torch.randn(4, 1, 32, 32) if dense else torch.randn(8, 1, 28, 28)
    targets = torch.randint(0, 4, (4, 32, 32) if dense else (8,))
    before = snapshot(module)
    one_step(module, images, targets)
    moved = changed(before, snapshot(module))
    assert moved and all(k.startswith("calibration.") for k in moved), moved
    assert {k for k in moved if k.startswith("calibration.")} >= {
        "calibration.alpha", "calibration.beta",
    }  # fmt: skip
    trainable = {n for n, p in module.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("calibration.") for n in trainable)
    frozen_bn = [m for n, m in module.named_modules() if n in module.frozen_bn]
    assert frozen_bn and not any(m.training for m in frozen_bn)


def test_the_calibrated_model_is_built_once_and_registers_nothing_twice():
    module = build_module(STAGE2, "classification")
    keys = set(module.state_dict())
    first = module.logits_model()
    assert module.logits_model() is first  # not rebuilt per step
    assert first.model is module.model and first.calibration is module.calibration
    assert set(module.state_dict()) == keys  # the wrapper is no submodule
    plain = build_module([], "classification")
    assert plain.logits_model() is plain.model


def test_stage2_config_errors_name_the_key():
    with pytest.raises(ValueError, match=r"^finetune.train_only: 'model.fcc' matches no parameter"):
        build_module(["finetune.train_only=[model.fcc]"])
    with pytest.raises(ValueError, match=r"^finetune.calibration_options: .*\['gat'\]"):
        build_module([*STAGE2, "finetune.calibration_options={gat: linear}"])
    with pytest.raises(ValueError, match=r"finetune.calibration='disalign' and eval.anchor_fusion"):
        build_module([*STAGE2, "eval.anchor_fusion=0.5", "regularizer.name=sar"])


def test_stage1_to_stage2_classification(tmp_path):
    """SAR + DA: stage 1 with SAR, stage 2 DisAlign from its folder; metrics are valid and the
    stage-2 model is stage 1's, bit for bit, plus the calibration."""
    from semantic_anchors.train import evaluate, train
    from semantic_anchors.train.checkpoint import load_checkpoint

    common = classification_overrides(fashion_root(tmp_path))
    stage1 = tmp_path / "stage1"
    train("fashion-lt-smallcnn-quick", [*common, "regularizer.name=sar"], out_dir=stage1)
    metrics = train(
        "fashion-lt-smallcnn-disalign", [*common, f"finetune.init_from={stage1}"],
        out_dir=tmp_path / "stage2",
    )  # fmt: skip
    assert 0 <= metrics["top1"] <= 100 and len(metrics["Acc"]) == 10
    first = load_checkpoint(stage1 / "checkpoints" / "last.ckpt")["state_dict"]
    second = load_checkpoint(tmp_path / "stage2" / "checkpoints" / "last.ckpt")["state_dict"]
    for key, value in first.items():
        if key.startswith("model."):
            assert torch.equal(second[key], value), key
    assert not any(k.startswith("regularizer.") for k in second)  # SAR is not handed over
    assert {"calibration.alpha", "calibration.beta"} <= set(second)
    again = evaluate(tmp_path / "stage2")  # evaluation uses the calibrated logits too
    assert again["top1"] == pytest.approx(metrics["top1"])
    from semantic_anchors.train.export import export_run

    with pytest.raises(ValueError, match="'disalign' calibration"):  # a plain export would drop it
        export_run(tmp_path / "stage2", tmp_path / "model.pt")
    assert not (tmp_path / "model.pt").exists()


@pytest.mark.slow  # four short runs
def test_a_paused_stage2_resumes_exactly_without_its_stage1_folder(tmp_path):
    """init_from is read when a run starts only: a resumed stage 2 continues from its own
    checkpoint (the stage-1 folder may be gone) and ends equal to a straight stage 2."""
    import shutil

    from semantic_anchors.train import train
    from semantic_anchors.train.checkpoint import load_checkpoint

    common = [*classification_overrides(fashion_root(tmp_path), steps=4), "trainer.val_every=2"]
    # No random crop or flip: the first image a fresh classification transform serves is augmented
    # unlike the steady state (data/transforms/classification.py), which a resume would show.
    common += ["trainer.deterministic=true", "data.transforms={hflip: false, padding: 0}"]
    stage1 = tmp_path / "stage1"
    train("fashion-lt-smallcnn-quick", common, out_dir=stage1)
    stage2 = [*common, f"finetune.init_from={stage1}"]
    train("fashion-lt-smallcnn-disalign", stage2, out_dir=tmp_path / "straight")
    train("fashion-lt-smallcnn-disalign", [*stage2, "trainer.stop_at_step=2"],
          out_dir=tmp_path / "paused")  # fmt: skip
    shutil.rmtree(stage1)
    train(resume=tmp_path / "paused")
    states = [
        load_checkpoint(tmp_path / run / "checkpoints" / "last.ckpt")["state_dict"]
        for run in ("straight", "paused")
    ]
    assert states[0].keys() == states[1].keys()
    for key, value in states[0].items():
        assert torch.equal(value, states[1][key]), key


@pytest.mark.slow  # about 3 s alone, more on a loaded machine
def test_stage1_to_stage2_segmentation(tmp_path):
    from semantic_anchors.train import train

    common = segmentation_overrides(fashion_root(tmp_path))
    stage1 = tmp_path / "stage1"
    train("fashion-scenes-fcn-quick", [*common, "regularizer.name=sar"], out_dir=stage1)
    metrics = train(
        "fashion-scenes-fcn-disalign", [*common, f"finetune.init_from={stage1}"],
        out_dir=tmp_path / "stage2",
    )  # fmt: skip
    assert 0 <= metrics["mIoU"] <= 100 and len(metrics["IoU"]) == 11


def test_init_from_errors_name_the_key(tmp_path):
    from semantic_anchors.train import train

    common = classification_overrides(fashion_root(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"^finetune.init_from: .* is not a run folder"):
        train("fashion-lt-smallcnn-disalign", [*common, f"finetune.init_from={tmp_path}"],
              out_dir=tmp_path / "a")  # fmt: skip
    assert not (tmp_path / "a").exists()  # refused before the run folder is made
    with pytest.raises(FileNotFoundError, match=r"^finetune.init_from: .*gone' not found; train"):
        train("fashion-lt-smallcnn-disalign", [*common, f"finetune.init_from={tmp_path}/gone"],
              out_dir=tmp_path / "a")  # fmt: skip
    stage1 = tmp_path / "stage1"
    train("fashion-lt-smallcnn-quick", common, out_dir=stage1)
    with pytest.raises(ValueError, match=r"^finetune.init_from: .*shape mismatches: .*stages.0.0"):
        train(
            "fashion-lt-smallcnn-disalign",
            [*common, f"finetune.init_from={stage1}", "model.widths=[8, 32, 64, 128]"],
            out_dir=tmp_path / "b",
        )


@pytest.mark.parametrize("module", ["semantic_anchors.calibration", "semantic_anchors.losses.grw"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
