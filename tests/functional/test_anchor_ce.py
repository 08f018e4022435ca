import math

import pytest
import torch

from semantic_anchors.functional import anchor_gate, reweighted_anchor_ce
from semantic_anchors.regularizers._embedding import classify_anchors
from tests._helpers.references import logits_from_probs

# Rows: anchor c's predicted distribution. Diagonal p = [0.95, 0.5, 0.2].
PROBS = [[0.95, 0.03, 0.02], [0.3, 0.5, 0.2], [0.5, 0.3, 0.2]]


def test_reweight_hand_computed_three_classes():
    logits = logits_from_probs(PROBS)
    # Eq. 6: p0 = 0.95 > tau = 0.9 -> 1, so log w = [0, log .5, log .2]; Eq. 7 normalises by
    # log .5 + log .2 = log .1; Eq. 5 weights CE_c = -log p_c.
    w1, w2 = math.log(0.5) / math.log(0.1), math.log(0.2) / math.log(0.1)
    expected = w1 * -math.log(0.5) + w2 * -math.log(0.2)
    assert math.isclose(expected, 1.3336, abs_tol=1e-4)  # the number worked out by hand
    got = reweighted_anchor_ce(logits, tau=0.9)
    assert math.isclose(got.item(), expected, rel_tol=1e-5)


def test_no_reweight_is_mean_ce():
    logits = logits_from_probs(PROBS)
    expected = -(math.log(0.95) + math.log(0.5) + math.log(0.2)) / 3
    assert math.isclose(reweighted_anchor_ce(logits, reweight=False).item(), expected, rel_tol=1e-5)


def test_all_confident_gives_zero_loss_and_gradient():
    logits = (torch.eye(4) * 20).requires_grad_()
    loss = reweighted_anchor_ce(logits, tau=0.9)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_weights_are_not_detached():
    """The gradient includes d w / d logits, as in the authors' code (w is not detached)."""
    logits = logits_from_probs(PROBS).double().requires_grad_()
    reweighted_anchor_ce(logits, tau=0.9).backward()
    ours = logits.grad.clone()

    def reference(lg, detach_weights):
        logp = torch.log_softmax(lg, 1).diagonal()
        p = logp.exp()
        p = torch.where(p > 0.9, torch.ones_like(p), p)
        w = torch.log(p) / (torch.log(p).sum() + 1e-9)
        w = w.detach() if detach_weights else w
        return (w * -logp).sum()

    for detach, should_match in [(False, True), (True, False)]:
        lg = logits.detach().clone().requires_grad_()
        reference(lg, detach).backward()
        assert torch.allclose(ours, lg.grad, atol=1e-6) is should_match


def test_gate_closed_partly_and_open():
    # Anchor 2 is misclassified (argmax 0): closed for that anchor.
    assert anchor_gate(logits_from_probs(PROBS), delta=0.8).tolist() == [True, False, False]
    # All argmax-correct, but anchor 1 only at 0.7 < delta.
    partly = [[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.05, 0.05, 0.9]]
    assert anchor_gate(logits_from_probs(partly), delta=0.8).tolist() == [True, False, True]
    opened = [[0.9, 0.05, 0.05], [0.1, 0.85, 0.05], [0.05, 0.05, 0.9]]
    assert anchor_gate(logits_from_probs(opened), delta=0.8).tolist() == [True, True, True]
    # A higher delta closes it again for anchor 1 (0.85 is not above 0.87).
    assert anchor_gate(logits_from_probs(opened), delta=0.87).tolist() == [True, False, True]


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [(torch.float64, torch.float64), (torch.float32, torch.float32),
     (torch.bfloat16, torch.float32), (torch.float16, torch.float32)],
)  # fmt: skip
def test_computed_in_at_least_float32_and_float64_stays_float64(dtype, expected):
    logits = logits_from_probs(PROBS).to(dtype)
    assert reweighted_anchor_ce(logits).dtype == expected
    assert reweighted_anchor_ce(logits, reweight=False).dtype == expected


def test_float64_is_not_rounded_through_float32():
    """Differences far below float32 resolution still change the float64 loss and gate."""
    logits = torch.tensor(PROBS, dtype=torch.float64).log()  # p_1 = 0.5 to 1e-16
    up, down = logits.clone(), logits.clone()
    up[1, 1] += 1e-12  # p_1 = 0.5 + 2.5e-13
    down[1, 1] -= 1e-12
    assert reweighted_anchor_ce(up) != reweighted_anchor_ce(down)
    assert anchor_gate(up, delta=0.5).tolist() == [True, True, False]
    assert anchor_gate(down, delta=0.5).tolist() == [True, False, False]


def test_classify_anchors_returns_promoted_logits():
    embedded = torch.randn(3, 4, dtype=torch.float64)
    for dtype, expected in [(torch.float64, torch.float64), (torch.float32, torch.float32),
                            (torch.bfloat16, torch.float32)]:  # fmt: skip
        head = torch.nn.Linear(4, 3).to(dtype)
        assert classify_anchors(head, embedded, 3).dtype == expected
