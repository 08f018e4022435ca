"""MiSLAS (Zhong et al., CVPR 2021): label-aware smoothing, mixup, the class-balanced sampler,
shift learning on BN, the frozen stage 2 and a two-stage run through
``semantic_anchors.train.train``."""

from __future__ import annotations

import collections

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from semantic_anchors.losses import build_loss
from semantic_anchors.losses.label_aware_smoothing import (
    LabelAwareSmoothingLoss,
    label_aware_smoothing,
)
from semantic_anchors.train.mixup import mixup_batch
from semantic_anchors.train.sampling import ClassBalancedBatchSampler
from tests._helpers.twostage import (
    build_module,
    changed,
    classification_overrides,
    fashion_root,
    one_step,
    snapshot,
)

COUNTS = [5000.0, 2000.0, 700.0, 300.0, 50.0]
STAGE2 = [
    "finetune.train_only=[model.fc, calibration]", "finetune.calibration=lws",
    "finetune.freeze_bn=false", "loss.name=las",
]  # fmt: skip


# ----------------------------------------------------------------------------- LAS
def _authors_smoothing(counts, head, tail, shape, power=None):
    """The authors' formulas, as written in their LabelAwareSmoothing (numpy)."""
    n = np.array(counts)
    n_1, n_k = n.max(), n.min()
    if shape == "concave":
        return tail + (head - tail) * np.sin((n - n_k) * np.pi / (2 * (n_1 - n_k)))
    if shape == "linear":
        return tail + (head - tail) * (n - n_k) / (n_1 - n_k)
    if shape == "convex":
        return head + (head - tail) * np.sin(1.5 * np.pi + (n - n_k) * np.pi / (2 * (n_1 - n_k)))
    return tail + (head - tail) * np.power((n - n_k) / (n_1 - n_k), power)


@pytest.mark.parametrize(
    ("shape", "power"), [("concave", None), ("linear", None), ("convex", None), ("exp", 2.0)]
)
@pytest.mark.parametrize(("head", "tail"), [(0.3, 0.0), (0.4, 0.1)])
def test_las_factors_equal_the_authors_formulas(shape, power, head, tail):
    ours = label_aware_smoothing(COUNTS, head, tail, shape, power)
    expected = _authors_smoothing(COUNTS, head, tail, shape, power)
    np.testing.assert_allclose(ours.numpy(), expected, rtol=0, atol=1e-12)
    assert ours[0] == pytest.approx(head) and ours[-1] == pytest.approx(tail)


def test_las_factors_by_hand_and_edge_cases():
    # linear: x = (10 - 1) / 99 -> 0.3 * 9 / 99
    assert label_aware_smoothing([100, 10, 1], 0.3, 0.0, "linear").tolist() == pytest.approx(
        [0.3, 0.3 * 9 / 99, 0.0]
    )
    assert label_aware_smoothing([7, 7, 7], 0.3, 0.1).tolist() == pytest.approx([0.3] * 3)
    with pytest.raises(ValueError, match=r"`power` must be set"):
        label_aware_smoothing(COUNTS, shape="exp")
    with pytest.raises(ValueError, match=r"`shape` must be one of"):
        label_aware_smoothing(COUNTS, shape="cubic")
    with pytest.raises(ValueError, match=r"`smooth_head` must lie in \[0.0, 1.0\]"):
        label_aware_smoothing(COUNTS, smooth_head=1.5)


def _las_loop(logits, targets, eps, ignore=255):
    logits = logits.movedim(1, -1).reshape(-1, logits.shape[1]).double()
    values = []
    for row, y in zip(logits, targets.reshape(-1).tolist(), strict=True):
        if y == ignore:
            continue
        log_p = torch.log_softmax(row, 0)
        e = float(eps[y])
        values.append((1 - e) * -float(log_p[y]) + e * -float(log_p.mean()))
    return sum(values) / max(len(values), 1)


@pytest.mark.parametrize("dense", [False, True])
def test_las_loss_against_a_loop(dense):
    torch.manual_seed(0)
    shape = (3, 5, 4, 4) if dense else (30, 5)
    logits = torch.randn(*shape, dtype=torch.float64)
    targets = torch.randint(0, 5, (shape[0], *shape[2:]))
    targets.view(-1)[:4] = 255
    loss = build_loss("las", num_classes=5, class_frequencies=COUNTS, smooth_head=0.4,
                      smooth_tail=0.1)  # fmt: skip
    assert isinstance(loss, LabelAwareSmoothingLoss)
    expected = _las_loop(logits, targets, label_aware_smoothing(COUNTS, 0.4, 0.1))
    assert float(loss(logits, targets)) == pytest.approx(expected, rel=1e-6)


def test_las_without_smoothing_is_cross_entropy():
    logits, targets = torch.randn(8, 5), torch.randint(0, 5, (8,))
    loss = LabelAwareSmoothingLoss(5, COUNTS, smooth_head=0.0, smooth_tail=0.0)
    torch.testing.assert_close(loss(logits, targets), F.cross_entropy(logits, targets))


# ----------------------------------------------------------------------------- mixup
def test_mixup_against_a_hand_mix():
    x, y = torch.randn(6, 1, 4, 4), torch.tensor([0, 1, 2, 3, 4, 5])  # label i = index i
    mixed, t = mixup_batch(x, y, 1.0, seed=3, step=7, rank=1)
    perm = t.targets_b  # the permutation itself, since label i = index i
    assert sorted(perm.tolist()) == list(range(6)) and 0 < t.lam < 1
    hand = torch.stack([t.lam * x[i] + (1 - t.lam) * x[int(perm[i])] for i in range(6)])
    torch.testing.assert_close(mixed, hand)
    again, t2 = mixup_batch(x, y, 1.0, seed=3, step=7, rank=1)  # a function of (seed, step, rank)
    assert torch.equal(again, mixed) and t2.lam == t.lam
    assert mixup_batch(x, y, 1.0, seed=3, step=8, rank=1)[1].lam != t.lam
    same, t0 = mixup_batch(x, y, None, seed=3, step=7)
    assert same is x and t0.lam == 1.0 and torch.equal(t0.dominant, y)
    logits = torch.randn(6, 6)
    expected = t.lam * F.cross_entropy(logits, y) + (1 - t.lam) * F.cross_entropy(logits, perm)
    torch.testing.assert_close(t.loss(F.cross_entropy, logits), expected)


def test_the_training_step_uses_the_mixed_loss():
    module = build_module(["data.mixup_alpha=1.0", "trainer.log_every=1000"])
    images, targets = torch.randn(8, 1, 28, 28), torch.randint(0, 4, (8,))
    mixed, t = mixup_batch(images, targets, 1.0, seed=0, step=0)
    module.train()
    with torch.no_grad():
        logits = module.model(mixed)
        expected = t.lam * F.cross_entropy(logits, t.targets_a) + (1 - t.lam) * F.cross_entropy(
            logits, t.targets_b
        )
        got = module.training_step((images, targets), 0)
    torch.testing.assert_close(got, expected)


def test_mixup_and_the_sampler_are_classification_only():
    with pytest.raises(ValueError, match=r"^data.mixup_alpha=1.0 applies to classification only"):
        build_module(["data.mixup_alpha=1.0"], task="segmentation")
    with pytest.raises(ValueError, match=r"^data.sampler='class-balanced' applies to classif"):
        build_module(["data.sampler=class-balanced"], task="segmentation")


# ----------------------------------------------------------------------------- sampler
def test_class_balanced_sampler_frequencies_and_cycles():
    targets = [0] * 60 + [1] * 25 + [2] * 10 + [3] * 5  # long-tailed, 100 items
    sampler = ClassBalancedBatchSampler(targets, batch_size=16, seed=0)
    drawn = [i for step in range(25) for i, _ in sampler.batch(step)]  # 400 = 25 rounds of 4 x 4
    counts = collections.Counter(targets[i] for i in drawn)
    assert counts == {0: 100, 1: 100, 2: 100, 3: 100}  # every class equally often
    groups = [drawn[k : k + 4] for k in range(0, len(drawn), 4)]
    assert all(len({targets[i] for i in g}) == 1 for g in groups)  # 4 of one class at a time
    tail = [i for i in drawn if targets[i] == 3]  # class 3 cycles through its 5 items
    assert all(sorted(tail[k : k + 5]) == list(range(95, 100)) for k in range(0, 100, 5))


def test_class_balanced_batches_are_a_function_of_the_step():
    targets = [0] * 30 + [1] * 3
    a = ClassBalancedBatchSampler(targets, batch_size=6, seed=5)
    b = ClassBalancedBatchSampler(targets, batch_size=6, seed=5)
    late = b.batch(40)  # asked first, out of order
    assert [a.batch(s) for s in range(41)][40] == late
    ranks = [ClassBalancedBatchSampler(targets, 6, 5, rank=r, world_size=2) for r in (0, 1)]
    assert ranks[0].batch(3) + ranks[1].batch(3) == a.batch(6) + a.batch(7)
    assert ClassBalancedBatchSampler(targets, batch_size=6, seed=6).batch(0) != a.batch(0)
    with pytest.raises(ValueError, match=r"needs a classification dataset with per-item"):
        ClassBalancedBatchSampler(None, batch_size=6, seed=0)


# ----------------------------------------------------------------------------- stage 2
def test_stage2_step_trains_the_classifier_and_lws_and_shifts_bn():
    """Shift learning on BN: running mean / var move, BN affine and convolutions do not."""
    torch.manual_seed(0)
    module = build_module([*STAGE2, "optimizer.lr=0.5"])
    before = snapshot(module)
    one_step(module, torch.randn(8, 1, 28, 28), torch.randint(0, 4, (8,)))
    moved = changed(before, snapshot(module))
    assert {"model.fc.weight", "model.fc.bias", "calibration.scale"} <= moved
    stats = {k for k in moved if k.endswith(("running_mean", "running_var", "num_batches_tracked"))}
    assert stats and all(k.startswith("model.stages.") for k in stats)
    assert moved - stats == {"model.fc.weight", "model.fc.bias", "calibration.scale"}


def test_stage2_step_with_frozen_bn_keeps_the_statistics():
    torch.manual_seed(0)
    module = build_module([*STAGE2[:2], "finetune.freeze_bn=true", "loss.name=las"])
    before = snapshot(module)
    one_step(module, torch.randn(8, 1, 28, 28), torch.randint(0, 4, (8,)))
    assert changed(before, snapshot(module)) == {
        "model.fc.weight", "model.fc.bias", "calibration.scale",
    }  # fmt: skip


def test_stage2_optimizer_groups_give_lws_its_learning_rate():
    module = build_module([*STAGE2, "optimizer.lr=0.05", "finetune.calibration_lr_mult=2.0"])
    groups = module.configure_optimizers()["optimizer"].param_groups
    assert [(len(g["params"]), g["lr"]) for g in groups] == [(2, 0.05), (1, 0.1)]


def test_stage1_to_stage2(tmp_path):
    """MiSLAS + SAR: stage 1 with mixup and SAR, stage 2 from its folder; valid metrics."""
    from semantic_anchors.train import train

    common = classification_overrides(fashion_root(tmp_path))
    stage1 = tmp_path / "stage1"
    train("fashion-lt-smallcnn-mislas-stage1", [*common, "regularizer.name=sar"], out_dir=stage1)
    metrics = train(
        "fashion-lt-smallcnn-mislas-stage2", [*common, f"finetune.init_from={stage1}"],
        out_dir=tmp_path / "stage2",
    )  # fmt: skip
    assert 0 <= metrics["top1"] <= 100 and len(metrics["Acc"]) == 10


@pytest.mark.parametrize(
    "module",
    [
        "semantic_anchors.losses.label_aware_smoothing",
        "semantic_anchors.train.mixup",
        "semantic_anchors.train.sampling",
    ],
)
def test_docstring_examples_run(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
