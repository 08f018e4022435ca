import copy
import math

import pytest
import torch
import torch.nn.functional as F

from semantic_anchors import PrototypeRegularizer
from semantic_anchors.regularizers.registry import build_regularizer
from tests._helpers.references import make_batch, slow_class_means, slow_p2a


def as_table(means, num_classes, d, dtype=torch.float64):
    table = torch.zeros(num_classes, d, dtype=dtype)
    for k, v in means.items():
        table[k] = v.detach().to(dtype)
    return table


@pytest.mark.parametrize("dense", [True, False])
def test_matches_slow_loop_with_ignored_pixels(dense):
    features, labels = make_batch(dtype=torch.float64)
    if not dense:
        features = torch.randn(7, 5, dtype=torch.float64, requires_grad=True)
        labels = torch.tensor([0, 2, 2, 255, 0, 3, 2])
    reg = PrototypeRegularizer(4, 5, dense=dense, lambda_p2p=0.5).double()
    loss = reg(features, labels)
    means = as_table(slow_class_means(features.detach(), labels, 4), 4, 5)
    if dense:
        expected = 0.5 * slow_p2a(features.detach(), labels, means, labels != 255)
    else:
        valid = labels != 255
        expected = 0.5 * ((features.detach()[valid] - means[labels[valid]]) ** 2).mean().item()
    assert math.isclose(loss.item(), expected, rel_tol=1e-10)
    assert reg.last_stats == {
        "loss_p2p": pytest.approx(expected, rel=1e-10),
        "num_present": len(set(labels[labels != 255].tolist())),
    }


def test_prototypes_are_detached_features_get_the_mse_gradient():
    features, labels = make_batch(dtype=torch.float64)
    reg = PrototypeRegularizer(4, 5, lambda_p2p=1.0).double()
    reg(features, labels).backward()
    means = as_table(slow_class_means(features.detach(), labels, 4), 4, 5)
    valid = labels != 255
    n, d = int(valid.sum()), 5
    # d/df of mean((f - sg(P_y))^2): 2 (f - P_y) / (N D) on valid pixels, 0 on ignored ones.
    target = means[labels.clamp(max=3)].permute(0, 3, 1, 2)  # (B, D, h, w)
    expected = 2 * (features.detach() - target) / (n * d) * valid[:, None]
    torch.testing.assert_close(features.grad, expected)
    assert list(reg.parameters()) == []
    assert not any(buf.requires_grad for buf in reg.buffers())


def test_ema_memory_copies_then_averages_present_classes_only():
    reg = PrototypeRegularizer(4, 5, momentum=0.9)
    f1, y1 = make_batch(ignore_frac=0.0)
    y1[y1 == 3] = 0  # class 3 absent from the first batch
    reg(f1, y1)
    m1 = as_table(slow_class_means(f1.detach(), y1, 4), 4, 5, torch.float32)
    torch.testing.assert_close(reg.prototypes, m1)
    assert reg.initialized.tolist() == [True, True, True, False]

    f2, y2 = make_batch(ignore_frac=0.0)
    y2[y2 == 1] = 2  # class 1 absent from the second batch: its memory must not move
    loss = reg(f2, y2)
    m2 = as_table(slow_class_means(f2.detach(), y2, 4), 4, 5, torch.float32)
    expected = m1.clone()
    for k in (0, 2):
        expected[k] = 0.9 * m1[k] + 0.1 * m2[k]
    expected[3] = m2[3]  # first sighting copies
    torch.testing.assert_close(reg.prototypes, expected)
    # The loss uses the memory, not the batch means.
    p2a = slow_p2a(f2.detach().double(), y2, expected.double(), y2 != 255)
    assert math.isclose(loss.item(), 0.1 * p2a, rel_tol=1e-5)


def test_eval_mode_does_not_update_and_state_dict_round_trips():
    reg = PrototypeRegularizer(4, 5, momentum=0.5)
    features, labels = make_batch()
    reg(features, labels)
    reg(*make_batch())
    saved = copy.deepcopy(reg.state_dict())
    assert set(saved) == {"prototypes", "initialized"}
    other = PrototypeRegularizer(4, 5, momentum=0.5)
    other.load_state_dict(saved)
    reg.eval()
    other.eval()
    assert torch.equal(reg(features, labels), other(features, labels))
    assert torch.equal(reg.prototypes, saved["prototypes"])


def test_edge_cases_are_finite():
    reg = PrototypeRegularizer(3, 4, momentum=0.9)
    features = torch.randn(2, 4, 3, 3, requires_grad=True)
    for labels in (
        torch.full((2, 6, 6), 255),  # every pixel ignored
        torch.ones(2, 6, 6, dtype=torch.long),  # a single class
    ):
        loss = reg(features, labels)
        (grad,) = torch.autograd.grad(loss, features)
        assert torch.isfinite(loss) and torch.isfinite(grad).all()
    assert reg(features, torch.full((2, 6, 6), 255)).item() == 0.0
    assert reg.initialized.tolist() == [False, True, False]


def test_labels_resized_by_nearest_and_bf16_autocast():
    reg = PrototypeRegularizer(3, 4)
    features = torch.randn(2, 4, 3, 3)
    full = torch.randint(0, 3, (2, 12, 12))
    small = F.interpolate(full[:, None].float(), size=(3, 3), mode="nearest")[:, 0].long()
    assert torch.equal(reg(features, full), reg(features, small))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = reg(features.bfloat16(), full)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"momentum": 1.0}, r"`momentum` must lie in \[0.0, 1.0\), got 1.0"),
        ({"lambda_p2p": -0.1}, r"`lambda_p2p` must lie in \[0.0, inf\)"),
    ],
)
def test_constructor_rejects(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PrototypeRegularizer(3, 4, **kwargs)


def test_registry_builds_and_rejects_unknown_options():
    reg = build_regularizer("prototype", 3, 4, dense=True, momentum=0.9)
    assert isinstance(reg, PrototypeRegularizer) and reg.momentum == 0.9
    with pytest.raises(
        ValueError,
        match=r"regularizer 'prototype' does not take option\(s\) \['lambda_p2a'\]; valid options: "
        r"\['lambda_p2p', 'momentum', 'ignore_index', 'validate'\]",
    ):
        build_regularizer("prototype", 3, 4, dense=True, lambda_p2a=0.1)


def test_a_non_finite_feature_never_enters_the_memory():
    """The non-finite policy: a class whose batch mean is not finite keeps its memory; the other
    classes are updated as usual (checks off, as after training's first validating steps)."""
    reg = PrototypeRegularizer(4, 5, momentum=0.9, validate=False)
    f1, y1 = make_batch(ignore_frac=0.0)
    reg(f1, y1)
    m1 = reg.prototypes.clone()
    f2, y2 = make_batch(ignore_frac=0.0)
    poisoned = f2.detach().clone()
    pixel = (y2 == 2).nonzero()[0]  # one pixel of class 2
    poisoned[pixel[0], :, pixel[1], pixel[2]] = float("inf")
    reg(poisoned, y2)
    assert torch.isfinite(reg.prototypes).all()
    assert torch.equal(reg.prototypes[2], m1[2])
    m2 = as_table(slow_class_means(f2.detach(), y2, 4), 4, 5, torch.float32)
    for k in (0, 1, 3):
        torch.testing.assert_close(reg.prototypes[k], 0.9 * m1[k] + 0.1 * m2[k])
