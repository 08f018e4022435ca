import math

import pytest
import torch

from semantic_anchors import ETFDotRegressionRegularizer, make_anchors
from semantic_anchors.regularizers.registry import build_regularizer
from tests._helpers.references import iter_pixels, make_batch


def slow_dot_regression(features, labels, weight, lam):
    """``lam * mean_i 1/2 (w_y . h_i / |h_i| - 1)^2`` by a loop over the valid pixels."""
    pixels = list(iter_pixels(features, labels))
    total = 0.0
    for h, y in pixels:
        cosine = sum(weight[y, k].item() * h[k].item() for k in range(len(h)))
        cosine /= max(math.sqrt(sum(v.item() ** 2 for v in h)), 1e-8)
        total += 0.5 * (cosine - 1) ** 2
    return lam * total / max(len(pixels), 1)


def test_weight_is_a_fixed_simplex_etf():
    reg = ETFDotRegressionRegularizer(5, 8, generator=torch.Generator().manual_seed(3))
    expected = make_anchors("etf", 5, 8, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(reg.weight, expected.float())
    gram = reg.weight @ reg.weight.T
    torch.testing.assert_close(gram.diagonal(), torch.ones(5))
    off = gram[~torch.eye(5, dtype=torch.bool)]
    torch.testing.assert_close(off, torch.full_like(off, -1 / 4))
    assert list(reg.parameters()) == [] and set(reg.state_dict()) == {"weight"}


@pytest.mark.parametrize("dense", [True, False])
def test_matches_slow_loop_and_only_features_get_gradients(dense):
    if dense:
        features, labels = make_batch(dtype=torch.float64)
    else:
        features = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
        labels = torch.tensor([0, 1, 255, 3, 3, 2])
    reg = ETFDotRegressionRegularizer(4, 5, dense=dense, lambda_dr=0.5).double()
    loss = reg(features, labels)
    expected = slow_dot_regression(features.detach(), labels, reg.weight, 0.5)
    assert math.isclose(loss.item(), expected, rel_tol=1e-10)
    loss.backward()
    assert features.grad is not None and not reg.weight.requires_grad
    # Ignored pixels / samples get no gradient.
    ignored = labels == 255
    grad = features.grad if not dense else features.grad.permute(0, 2, 3, 1)
    assert torch.equal(grad[ignored], torch.zeros_like(grad[ignored]))


def test_zero_at_the_vertices_whatever_the_norm_and_hand_value_elsewhere():
    reg = ETFDotRegressionRegularizer(3, 4, dense=False, lambda_dr=1.0)
    at_vertices = reg.weight[[2, 0, 1]] * torch.tensor([[0.5], [3.0], [7.0]])
    assert reg(at_vertices, torch.tensor([2, 0, 1])).item() == pytest.approx(0.0, abs=1e-12)
    # A feature at another vertex has cosine -1/(C-1) = -1/2: loss 1/2 (-1/2 - 1)^2 = 9/8.
    assert reg(reg.weight[[1]], torch.tensor([0])).item() == pytest.approx(9 / 8, rel=1e-6)
    assert reg.last_stats["mean_cosine"] == pytest.approx(-0.5, rel=1e-6)


def test_gradcheck_float64():
    reg = ETFDotRegressionRegularizer(3, 4, validate=False).double()
    labels = torch.randint(0, 3, (1, 2, 3))
    labels[0, 0, 0] = 255
    features = torch.randn(1, 4, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda f: reg(f, labels), (features,))


@pytest.mark.parametrize("dense", [True, False])
def test_logits_and_frozen_classifier_agree(dense):
    reg = ETFDotRegressionRegularizer(4, 6, dense=dense)
    features = torch.randn(2, 6, 3, 3) if dense else torch.randn(5, 6)
    logits = reg.logits(features)
    assert logits.shape == ((2, 4, 3, 3) if dense else (5, 4))
    assert float(logits.abs().max()) <= 1 + 1e-6  # cosines
    head = reg.make_classifier()
    assert isinstance(head, torch.nn.Conv2d if dense else torch.nn.Linear)
    assert head.bias is None and not head.weight.requires_grad
    assert torch.equal(head(features).argmax(1), logits.argmax(1))
    assert list(reg.parameters()) == []


def test_edge_cases_are_finite():
    reg = ETFDotRegressionRegularizer(3, 4)
    features = torch.zeros(2, 4, 3, 3, requires_grad=True)  # zero-norm features
    for labels in (torch.full((2, 6, 6), 255), torch.ones(2, 6, 6, dtype=torch.long)):
        loss = reg(features, labels)
        (grad,) = torch.autograd.grad(loss, features)
        assert torch.isfinite(loss) and torch.isfinite(grad).all()
    assert reg(features, torch.full((2, 6, 6), 255)).item() == 0.0
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = reg(torch.randn(2, 4, 3, 3).bfloat16(), torch.ones(2, 6, 6, dtype=torch.long))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_bad_options():
    with pytest.raises(ValueError, match=r"anchors='etf' needs feat_dim >= num_classes - 1 = 4"):
        ETFDotRegressionRegularizer(5, 3)
    with pytest.raises(ValueError, match=r"`lambda_dr` must lie in \[0.0, inf\), got -2.0"):
        ETFDotRegressionRegularizer(3, 4, lambda_dr=-2.0)
    reg = build_regularizer("etf-dr", 3, 4, dense=False, lambda_dr=0.5)
    assert isinstance(reg, ETFDotRegressionRegularizer) and reg.lambda_dr == 0.5
    with pytest.raises(
        ValueError,
        match=r"regularizer 'etf-dr' does not take option\(s\) \['anchors'\]; valid options: "
        r"\['lambda_dr', 'ignore_index', 'validate', 'generator'\]",
    ):
        build_regularizer("etf-dr", 3, 4, dense=False, anchors="etf")
