import math

import pytest
import torch

from semantic_anchors import FixedAnchorRegularizer, make_anchors
from tests._helpers.references import slow_p2a


@pytest.mark.parametrize("kind", ["normal", "orthogonal", "etf"])
def test_matches_slow_loop_and_only_features_get_gradients(kind):
    cr = FixedAnchorRegularizer(4, 6, anchors=kind, lambda_p2a=0.5)
    features = torch.randn(2, 6, 5, 5, requires_grad=True)
    labels = torch.randint(0, 4, (2, 5, 5))
    labels[0, :2] = 255
    loss = cr(features, labels)
    expected = 0.5 * slow_p2a(
        features.detach().double(), labels, cr.anchors.double(), labels != 255
    )
    assert math.isclose(loss.item(), expected, rel_tol=1e-5)
    loss.backward()
    assert features.grad is not None
    assert list(cr.parameters()) == [] and not cr.anchors.requires_grad
    assert cr.last_stats == {"loss_p2a": pytest.approx(expected, rel=1e-5)}


def test_user_anchors_and_vector_form():
    anchors = make_anchors("etf", 3, 4)
    cr = FixedAnchorRegularizer(3, 4, dense=False, anchors=anchors, lambda_p2a=1.0)
    features = anchors[[0, 1, 2, 1]].clone()
    assert cr(features, torch.tensor([0, 1, 2, 1])).item() == pytest.approx(0.0, abs=1e-7)
    # The wrong labels cost |a_i - a_j|^2 / D = (2 + 2 / (C - 1)) / D per sample for an ETF.
    wrong = cr(features, torch.tensor([1, 2, 0, 0])).item()
    assert wrong == pytest.approx((2 + 2 / 2) / 4, rel=1e-5)
