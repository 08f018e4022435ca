import math

import pytest
import torch
import torch.nn.functional as F

from semantic_anchors.losses import FocalLoss
from tests._helpers.references import iter_items, make_inputs, slow_mean, slow_nll


def slow_focal(logits, targets, gamma, alpha=None):
    """Mean over non-ignored items of ``-alpha_y (1 - p_y)^gamma log p_y``."""
    values = []
    for scores, y in iter_items(logits, targets):
        nll = slow_nll(scores, y)
        p = math.exp(-nll)
        a = 1.0 if alpha is None else alpha[y]
        values.append(a * (1 - p) ** gamma * nll)
    return slow_mean(values)


@pytest.mark.parametrize("dense", [True, False])
@pytest.mark.parametrize(
    ("gamma", "alpha"), [(2.0, None), (1.5, [0.25, 1.0, 0.5, 2.0]), (2.0, 0.25)]
)
def test_matches_slow_loop(dense, gamma, alpha):
    logits, targets = make_inputs(dense)
    loss = FocalLoss(4, gamma=gamma, alpha=alpha)(logits, targets)
    per_class = [alpha] * 4 if isinstance(alpha, float) else alpha
    expected = slow_focal(logits, targets, gamma, per_class)
    assert math.isclose(loss.item(), expected, rel_tol=1e-9)


@pytest.mark.parametrize("dense", [True, False])
def test_gamma_zero_is_cross_entropy(dense):
    logits, targets = make_inputs(dense)
    loss = FocalLoss(4, gamma=0.0)(logits, targets)
    torch.testing.assert_close(loss, F.cross_entropy(logits, targets, ignore_index=255))
    (ours,) = torch.autograd.grad(loss, logits)
    (ref,) = torch.autograd.grad(F.cross_entropy(logits, targets, ignore_index=255), logits)
    torch.testing.assert_close(ours, ref)


def test_down_weights_easy_examples():
    # p_y = 0.9 (easy) versus p_y = 0.1 (hard): the focal term shrinks the easy one by 0.01.
    easy = torch.tensor([[math.log(9.0), 0.0]])
    hard = torch.tensor([[0.0, math.log(9.0)]])
    target = torch.tensor([0])
    focal, ce = FocalLoss(2), FocalLoss(2, gamma=0.0)
    assert focal(easy, target).item() == pytest.approx(0.01 * ce(easy, target).item(), rel=1e-5)
    assert focal(hard, target).item() == pytest.approx(0.81 * ce(hard, target).item(), rel=1e-5)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_ignored_and_perfect_items_keep_gradients_finite(gamma):
    logits = torch.tensor([[50.0, -50.0, 0.0], [1.0, 2.0, 3.0]], requires_grad=True)
    targets = torch.tensor([0, 255])  # a perfectly classified item and an ignored one
    loss = FocalLoss(3, gamma=gamma)(logits, targets)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    assert torch.equal(logits.grad[1], torch.zeros(3))
    everything_ignored = FocalLoss(3)(torch.randn(2, 3, 2, 2), torch.full((2, 2, 2), 255))
    assert everything_ignored.item() == 0.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"gamma": -1.0}, r"`gamma` must lie in \[0.0, inf\), got -1.0"),
        ({"alpha": [0.5, 0.5]}, r"`alpha` must be a float or have num_classes=3 entries, got 2"),
        ({"alpha": [0.5, -0.5, 1.0]}, r"`alpha` must be finite and >= 0"),
    ],
)
def test_constructor_rejects(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FocalLoss(3, **kwargs)
