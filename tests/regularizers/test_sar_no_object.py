"""SAR with a classifier of ``C + 1`` outputs, the last for "no object" (query-based models)."""

import math

import pytest
import torch
from torch import nn

from semantic_anchors.regularizers import SemanticAnchorRegularizer

C, D = 3, 4


def _features(n=6):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, D, dtype=torch.float64, generator=g, requires_grad=True)


LABELS = torch.tensor([0, 1, 2, 255, 1, 255])  # 255: unmatched queries


def _sar(**options):
    torch.manual_seed(0)
    return SemanticAnchorRegularizer(C, D, dense=False, no_object=True, **options).double()


def _head():
    torch.manual_seed(1)
    return nn.Linear(D, C + 1).double()


def test_a_classifier_with_a_no_object_output_needs_the_option():
    plain = SemanticAnchorRegularizer(C, D, dense=False)
    with pytest.raises(
        ValueError, match=r"to \(3, 3\) logits.*got \(3, 4\); .*needs no_object=True"
    ):
        plain(_features().float(), LABELS, _head().float())
    with pytest.raises(ValueError, match=r"\(3, 4\) logits \(num_classes \+ 1 outputs"):
        _sar()(_features(), LABELS, nn.Linear(D, C + 2).double())
    with pytest.raises(ValueError, match=r"\(3, 4\) logits \(num_classes \+ 1 outputs"):
        _sar()(_features(), LABELS, nn.Linear(D, C).double())


@pytest.mark.parametrize("reweight", [False, True])
def test_the_anchor_ce_keeps_the_no_object_logit_in_its_softmax(reweight):
    """Hand-computed in float64: softmax over all C + 1 outputs, target class c for anchor c."""
    sar, head = _sar(reweight=reweight, lambda_p2a=0.0), _head()
    sar(_features(), LABELS, head)
    with torch.no_grad():
        logits = head(sar.embedded_anchors()).tolist()  # (C, C + 1), BN on the same batch
    log_p = []
    for c, row in enumerate(logits):
        norm = math.log(sum(math.exp(v) for v in row))  # every output, no object included
        log_p.append(row[c] - norm)
    ce = [-v for v in log_p]
    if reweight:  # Eq. 6-7: confident anchors weigh 0, the others log p_c / sum log p_i
        kept = [0.0 if math.exp(v) > sar.tau else v for v in log_p]
        expected = sum(k / (sum(kept) + 1e-9) * e for k, e in zip(kept, ce, strict=True))
    else:
        expected = sum(ce) / C
    assert sar.last_stats["loss_aux"] == pytest.approx(expected, rel=1e-12)


def test_an_anchor_classified_as_no_object_fails_the_gate():
    sar, head = _sar(gate="class"), _head()
    no_object_wins = torch.zeros(C, C + 1, dtype=torch.float64)
    no_object_wins[:, C] = 100.0  # each anchor's largest logit is "no object"
    no_object_wins[1, 1] = 200.0  # but anchor 1's is its own class
    sar(_features(), LABELS, lambda a: head(a) + no_object_wins)
    assert sar.last_stats["num_confident"] == 1
    assert sar.initialized.tolist() == [False, True, False]


def test_the_pull_and_its_gradient_by_hand():
    """Gate open: the pull is lambda_p2a * mean over matched queries and channels of
    (f - a_y)^2, so its gradient is 2 lambda_p2a (f - a_y) / (N D) on matched rows, 0 else."""
    sar, head = _sar(lambda_aux=0.0, lambda_p2a=0.5), _head()
    confident = 100.0 * torch.eye(C, C + 1, dtype=torch.float64)
    features = _features()
    loss = sar(features, LABELS, lambda a: head(a) + confident)
    anchors = sar.semantic_anchors  # the first open gate copied the embedded anchors
    assert sar.initialized.all()
    matched = LABELS != 255
    n = int(matched.sum())
    f, a = features.detach()[matched], anchors[LABELS[matched]]
    assert loss.item() == pytest.approx(0.5 * ((f - a) ** 2).sum().item() / (n * D), rel=1e-12)
    (grad,) = torch.autograd.grad(loss, features)
    expected = torch.zeros_like(grad)
    expected[matched] = 2 * 0.5 * (f - a) / (n * D)
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=0)
