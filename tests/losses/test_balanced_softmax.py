import math

import pytest
import torch
import torch.nn.functional as F

from semantic_anchors.losses import BalancedSoftmaxLoss, LogitAdjustedLoss
from tests._helpers.references import iter_items, make_inputs, slow_mean, slow_nll

COUNTS = [300, 40, 9, 1]


@pytest.mark.parametrize("dense", [True, False])
def test_matches_slow_loop_with_log_counts(dense):
    logits, targets = make_inputs(dense)
    loss = BalancedSoftmaxLoss(4, COUNTS)(logits, targets)
    # Ren et al.: logits + log n_j (the constant log sum n cancels in the softmax).
    expected = slow_mean(
        slow_nll([z + math.log(n) for z, n in zip(scores, COUNTS, strict=True)], y)
        for scores, y in iter_items(logits, targets)
    )
    assert math.isclose(loss.item(), expected, rel_tol=1e-6)


@pytest.mark.parametrize("dense", [True, False])
def test_uniform_frequencies_give_cross_entropy(dense):
    logits, targets = make_inputs(dense)
    loss = BalancedSoftmaxLoss(4, [7, 7, 7, 7])(logits, targets)
    torch.testing.assert_close(loss, F.cross_entropy(logits, targets, ignore_index=255))


def test_equals_logit_adjustment_with_tau_one_and_favours_rare_classes():
    logits, targets = make_inputs(dense=True)
    bal = BalancedSoftmaxLoss(4, COUNTS)(logits, targets)
    torch.testing.assert_close(bal, LogitAdjustedLoss(4, COUNTS, tau=1.0)(logits, targets))
    # Equal logits: a rare target costs more than a frequent one (its prior is small).
    flat = torch.zeros(2, 4)
    loss = BalancedSoftmaxLoss(4, COUNTS)
    assert loss(flat, torch.tensor([3, 3])) > loss(flat, torch.tensor([0, 0]))


def test_all_ignored_is_finite_zero_and_gradients_reach_the_logits():
    loss = BalancedSoftmaxLoss(4, COUNTS, ignore_index=None)
    logits = torch.randn(3, 4, requires_grad=True)
    loss(logits, torch.tensor([0, 3, 1])).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    assert list(loss.parameters()) == [] and not loss.offset.requires_grad
    value = BalancedSoftmaxLoss(4, COUNTS)(torch.randn(1, 4, 2, 2), torch.full((1, 2, 2), 255))
    assert value.item() == 0.0


def test_rejects_bad_frequencies():
    with pytest.raises(ValueError, match=r"`class_frequencies` must have num_classes=4 entries"):
        BalancedSoftmaxLoss(4, [1, 2, 3])
