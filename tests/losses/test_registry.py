import doctest
import importlib

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from semantic_anchors import SemanticAnchorRegularizer
from semantic_anchors.losses import (
    LOSSES,
    BalancedSoftmaxLoss,
    FocalLoss,
    LDAMLoss,
    LogitAdjustedLoss,
    build_loss,
)

FREQS = [600, 150, 40, 10]
LONG_TAIL = ["balanced-softmax", "logit-adjustment", "ldam-drw", "focal"]


def test_registry_names_and_classes():
    assert {name: LOSSES[name] for name in LONG_TAIL} == {
        "balanced-softmax": BalancedSoftmaxLoss,
        "logit-adjustment": LogitAdjustedLoss,
        "ldam-drw": LDAMLoss,
        "focal": FocalLoss,
    }
    assert "ce" in LOSSES


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_builds_and_handles_dense_vector_and_ignore(name):
    loss = build_loss(name, num_classes=4, class_frequencies=FREQS, ignore_index=255)
    for logits, targets in (
        (torch.randn(2, 4, 3, 3), torch.randint(0, 4, (2, 3, 3))),
        (torch.randn(5, 4), torch.randint(0, 4, (5,))),
    ):
        targets.view(-1)[0] = 255
        logits.requires_grad_()
        value = loss(logits, targets)
        value.backward()
        assert value.shape == () and torch.isfinite(value)
        assert torch.isfinite(logits.grad).all()
        assert torch.equal(logits.grad.movedim(1, -1)[targets == 255], torch.zeros(1, 4))


def test_options_are_passed_and_underscores_accepted():
    loss = build_loss(
        "ldam_drw", num_classes=4, class_frequencies=FREQS, drw_start_step=7, scale=1.0
    )
    assert isinstance(loss, LDAMLoss) and loss.drw_start_step == 7 and loss.scale == 1.0
    assert (
        build_loss("logit-adjustment", num_classes=4, class_frequencies=FREQS, tau=0.5).tau == 0.5
    )
    assert (
        build_loss("focal", num_classes=4, class_frequencies=FREQS, ignore_index=0).ignore_index
        == 0
    )


@pytest.mark.parametrize(
    ("name", "options", "match"),
    [
        ("focal", {"gama": 2.0},
         r"loss 'focal' does not take option\(s\) \['gama'\]; valid options: \['gamma', 'alpha'\]"),
        ("ldam-drw", {"s": 30, "drw_epoch": 160},
         r"loss 'ldam-drw' does not take option\(s\) \['drw_epoch', 's'\]; valid options: "
         r"\['max_margin', 'scale', 'beta', 'drw_start_step'\]"),
        ("balanced-softmax", {"tau": 2.0},
         r"loss 'balanced-softmax' does not take option\(s\) \['tau'\]; valid options: \[\]"),
        ("ce", {"weight": [1, 2]},
         r"loss 'ce' does not take option\(s\) \['weight'\]; valid options: \['label_smoothing'\]"),
        ("focall", {}, r"unknown loss 'focall' \(did you mean focal\?\); valid: \["),
    ],
)  # fmt: skip
def test_bad_names_and_options(name, options, match):
    with pytest.raises(ValueError, match=match):
        build_loss(name, num_classes=4, class_frequencies=FREQS, **options)


@pytest.mark.parametrize("name", ["ce", *LONG_TAIL])
@pytest.mark.parametrize("dense", [False, True])
def test_sar_combines_with_every_loss_in_a_training_step(name, dense):
    """criterion(logits, y) + sar(features, y, classifier): backward and an optimizer step."""
    d = 6
    backbone = nn.Conv2d(3, d, 1) if dense else nn.Linear(3, d)
    head = nn.Conv2d(d, 4, 1) if dense else nn.Linear(d, 4)
    sar = SemanticAnchorRegularizer(4, d, dense=dense, tau=1.0, delta=1e-6)  # gate opens at once
    criterion = build_loss(
        name,
        num_classes=4,
        class_frequencies=FREQS,
        **({"drw_start_step": 0} if name == "ldam-drw" else {}),
    )
    with torch.no_grad():  # every anchor its own argmax, so the gate opens and L_p2a counts
        weight = torch.linalg.pinv(sar.embedded_anchors()).T.mul(10)  # (C, D)
        head.weight.copy_(weight.reshape(head.weight.shape))
        head.bias.zero_()
    params = [*backbone.parameters(), *head.parameters(), *sar.parameters()]
    opt = torch.optim.SGD(params, lr=0.01)
    images = torch.randn(2, 3, 4, 4) if dense else torch.randn(6, 3)
    labels = torch.randint(0, 4, (2, 8, 8) if dense else (6,))
    labels.view(-1)[0] = 255
    if hasattr(criterion, "set_step"):  # what the training module does for ldam-drw
        criterion.set_step(0)
    features = backbone(images)
    logits = head(features)
    if dense:
        logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear")
    loss = criterion(logits, labels) + sar(features, labels, head)
    loss.backward()
    assert torch.isfinite(loss)
    assert sar.last_stats["gate_open"] is True and sar.last_stats["loss_p2a"] > 0
    for p in params:
        assert p.grad is not None and torch.isfinite(p.grad).all()
    before = head.weight.detach().clone()
    opt.step()
    assert not torch.equal(before, head.weight)
    if name == "ldam-drw":
        assert criterion.reweighting


MODULES = [
    "semantic_anchors.losses.balanced_softmax",
    "semantic_anchors.losses.focal",
    "semantic_anchors.losses.ldam",
    "semantic_anchors.losses.logit_adjustment",
    "semantic_anchors.regularizers.car",
    "semantic_anchors.regularizers.center",
    "semantic_anchors.regularizers.etf_classifier",
    "semantic_anchors.regularizers.prototype",
]


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples_run(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
