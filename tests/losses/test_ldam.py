import math

import pytest
import torch
import torch.nn.functional as F

from semantic_anchors.losses import LDAMLoss
from tests._helpers.references import iter_items, make_inputs, slow_nll

COUNTS = [16, 1, 256, 81]


def slow_ldam(logits, targets, margins, scale, weights=None):
    """Weighted mean over non-ignored items of ``-log softmax(s (z - m_y e_y))_y``."""
    num, den = 0.0, 0.0
    for scores, y in iter_items(logits, targets):
        shifted = [scale * (z - (margins[y] if k == y else 0.0)) for k, z in enumerate(scores)]
        w = 1.0 if weights is None else weights[y]
        num += w * slow_nll(shifted, y)
        den += w
    return num / den if den else 0.0


def test_margins_hand_checked():
    loss = LDAMLoss(4, COUNTS)
    # n^(-1/4) = 1/2, 1, 1/4, 1/3; scaled so the largest (class 1, one sample) is 0.5.
    torch.testing.assert_close(loss.margins, torch.tensor([0.25, 0.5, 0.125, 1 / 6]))
    assert loss.scale == 30.0 and loss.beta == 0.9999
    smaller = LDAMLoss(4, COUNTS, max_margin=0.2)
    torch.testing.assert_close(smaller.margins, torch.tensor([0.1, 0.2, 0.05, 0.2 / 3]))


def test_drw_weights_hand_checked():
    loss = LDAMLoss(2, [1, 2], beta=0.9)
    # (1 - beta) / (1 - beta^n): 1 and 0.1 / 0.19, then normalised to sum to C = 2.
    raw = [1.0, 0.1 / 0.19]
    expected = torch.tensor([2 * r / sum(raw) for r in raw])
    torch.testing.assert_close(loss.drw_weights, expected)
    default = LDAMLoss(4, COUNTS).drw_weights.double()
    raw = [(1 - 0.9999) / (1 - 0.9999**n) for n in COUNTS]
    torch.testing.assert_close(default, torch.tensor([4 * r / sum(raw) for r in raw]).double())


@pytest.mark.parametrize("dense", [True, False])
def test_matches_slow_loop_before_and_after_the_drw_step(dense):
    logits, targets = make_inputs(dense)
    logits = (0.1 * logits.detach()).requires_grad_()  # cosine-like scale, as the authors use
    loss = LDAMLoss(4, COUNTS, drw_start_step=100)
    margins = loss.margins.double().tolist()
    weights = loss.drw_weights.double().tolist()

    loss.set_step(99)
    assert not loss.reweighting
    expected = slow_ldam(logits, targets, margins, 30.0)
    assert math.isclose(loss(logits, targets).item(), expected, rel_tol=1e-5)

    loss.set_step(100)
    assert loss.reweighting
    expected = slow_ldam(logits, targets, margins, 30.0, weights)
    assert math.isclose(loss(logits, targets).item(), expected, rel_tol=1e-5)


def test_equals_the_authors_formula_with_cross_entropy_weight():
    logits, targets = make_inputs(dense=False, dtype=torch.float32)
    targets[2] = 1  # the authors' code has no ignore_index
    loss = LDAMLoss(4, COUNTS, drw_start_step=0)
    margin = loss.margins[targets][:, None]  # (B, 1)
    x_m = torch.where(F.one_hot(targets, 4).bool(), logits - margin, logits)
    expected = F.cross_entropy(30.0 * x_m, targets, weight=loss.drw_weights)
    torch.testing.assert_close(loss(logits, targets), expected)


def test_without_drw_step_it_never_reweights_and_no_margin_no_scale_is_ce():
    loss = LDAMLoss(4, COUNTS)
    loss.set_step(10**9)
    assert not loss.reweighting
    logits, targets = make_inputs(dense=True)
    plain = LDAMLoss(4, COUNTS, max_margin=0.0, scale=1.0)
    torch.testing.assert_close(
        plain(logits, targets), F.cross_entropy(logits, targets, ignore_index=255)
    )


def test_gradients_finite_and_all_ignored_is_zero():
    loss = LDAMLoss(4, COUNTS, drw_start_step=0)
    logits = torch.randn(2, 4, 3, 3, requires_grad=True)
    targets = torch.full((2, 3, 3), 255)
    value = loss(logits, targets)
    value.backward()
    assert value.item() == 0.0 and torch.equal(logits.grad, torch.zeros_like(logits))
    targets[0, 0, 0] = 1
    logits.grad = None
    loss(logits, targets).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_zero_count_is_treated_as_the_rarest_class():
    loss = LDAMLoss(3, [10, 0, 1])
    assert loss.margins[1] == loss.margins[2] == 0.5
    assert torch.isfinite(loss.drw_weights).all()
    assert loss.drw_weights[1] == loss.drw_weights[2]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"beta": 1.0}, r"`beta` must lie in \[0.0, 1.0\), got 1.0"),
        ({"max_margin": -0.5}, r"`max_margin` must lie in \[0.0, inf\)"),
        ({"scale": -1.0}, r"`scale` must lie in \[0.0, inf\)"),
        ({"drw_start_step": -3}, r"`drw_start_step` must be an int >= 0, got -3"),
    ],
)
def test_constructor_rejects(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LDAMLoss(4, COUNTS, **kwargs)
