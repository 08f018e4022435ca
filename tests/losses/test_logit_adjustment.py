import math

import pytest
import torch
import torch.nn.functional as F

from semantic_anchors.losses import LogitAdjustedLoss, posthoc_adjust
from tests._helpers.references import iter_items, make_inputs, slow_mean, slow_nll

FREQS = [500, 120, 30, 6]


@pytest.mark.parametrize("dense", [True, False])
@pytest.mark.parametrize("tau", [0.5, 1.0, 2.0])
def test_matches_slow_loop(dense, tau):
    logits, targets = make_inputs(dense)
    loss = LogitAdjustedLoss(4, FREQS, tau=tau)(logits, targets)
    total = sum(FREQS)
    offset = [tau * math.log(n / total) for n in FREQS]
    expected = slow_mean(
        slow_nll([z + o for z, o in zip(scores, offset, strict=True)], y)
        for scores, y in iter_items(logits, targets)
    )
    assert math.isclose(loss.item(), expected, rel_tol=1e-6)


@pytest.mark.parametrize("dense", [True, False])
def test_tau_zero_is_cross_entropy(dense):
    logits, targets = make_inputs(dense)
    loss = LogitAdjustedLoss(4, FREQS, tau=0.0)(logits, targets)
    torch.testing.assert_close(loss, F.cross_entropy(logits, targets, ignore_index=255))


def test_gradient_is_softmax_of_adjusted_logits_minus_onehot():
    logits, targets = make_inputs(dense=False)
    LogitAdjustedLoss(4, FREQS)(logits, targets).backward()
    prior = torch.tensor(FREQS, dtype=torch.float64) / sum(FREQS)
    probs = torch.softmax(logits.detach() + prior.log(), dim=1)
    valid = targets != 255
    expected = (probs - F.one_hot(targets.clamp(max=3), 4)) * valid[:, None] / valid.sum()
    torch.testing.assert_close(logits.grad, expected, rtol=1e-5, atol=1e-7)


def test_posthoc_adjust_hand_computed():
    logits = torch.tensor([[3.0, 1.0], [0.0, 0.0]])
    adjusted = posthoc_adjust(logits, [3, 1], tau=1.0)
    # log pi = log(3/4), log(1/4): subtracted from each row.
    expected = logits - torch.tensor([math.log(0.75), math.log(0.25)])
    torch.testing.assert_close(adjusted, expected)
    assert adjusted.argmax(1).tolist() == [0, 1]  # the second row flips to the rare class
    assert torch.equal(posthoc_adjust(logits, [3, 1], tau=0.0), logits)
    dense = torch.randn(2, 3, 4, 4)
    out = posthoc_adjust(dense, [5, 3, 1], tau=0.5)
    prior = torch.tensor([5.0, 3.0, 1.0]) / 9
    torch.testing.assert_close(out, dense - 0.5 * prior.log()[None, :, None, None])


def test_all_ignored_is_finite_zero_and_zero_frequency_is_finite():
    loss = LogitAdjustedLoss(3, [10, 0, 1])
    logits = torch.randn(2, 3, 2, 2, requires_grad=True)
    value = loss(logits, torch.full((2, 2, 2), 255))
    value.backward()
    assert value.item() == 0.0 and torch.equal(logits.grad, torch.zeros_like(logits))
    assert torch.isfinite(loss.offset).all()
    assert torch.isfinite(loss(logits, torch.ones(2, 2, 2, dtype=torch.long)))


@pytest.mark.parametrize(
    ("freqs", "kwargs", "match"),
    [
        ([1, 2], {}, r"`class_frequencies` must have num_classes=3 entries, got 2"),
        ([1, -2, 3], {}, r"`class_frequencies` must be finite and >= 0, got \[1.0, -2.0, 3.0\]"),
        ([1, float("nan"), 3], {}, r"`class_frequencies` must be finite and >= 0"),
        ([0, 0, 0], {}, r"`class_frequencies` must not be all zero"),
        ([1, 2, 3], {"tau": -1.0}, r"`tau` must lie in \[0.0, inf\), got -1.0"),
    ],
)
def test_constructor_rejects(freqs, kwargs, match):
    with pytest.raises(ValueError, match=match):
        LogitAdjustedLoss(3, freqs, **kwargs)


@pytest.mark.parametrize(
    ("logits", "targets", "match"),
    [
        (torch.randn(2, 4), torch.zeros(2, dtype=torch.long),
         r"`logits` must be \(B, C\) or \(B, C, H, W\) with C=num_classes=3, got shape \(2, 4\)"),
        (torch.randn(2, 3, 4), torch.zeros(2, 4, dtype=torch.long), r"got shape \(2, 3, 4\)"),
        (torch.randn(2, 3, 4, 4), torch.zeros(2, 4, 5, dtype=torch.long),
         r"`targets` must have shape \(2, 4, 4\) to match `logits` \(2, 3, 4, 4\), got \(2, 4, 5\)"),
        (torch.randn(2, 3), torch.zeros(2), r"`targets` must hold integer class indices"),
    ],
)  # fmt: skip
def test_forward_rejects(logits, targets, match):
    with pytest.raises(ValueError, match=match):
        LogitAdjustedLoss(3, [1, 2, 3])(logits, targets)
