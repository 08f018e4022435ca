import math

import pytest
import torch
from torch import nn

from semantic_anchors import CenterLossRegularizer
from semantic_anchors.regularizers.registry import build_regularizer
from tests._helpers.references import iter_pixels, make_batch


def slow_center_loss(features, labels, centers, lam):
    """``lam / 2 * mean_i |f_i - c_{y_i}|^2`` by a loop over the valid pixels."""
    pixels = list(iter_pixels(features, labels))
    total = sum(((f - centers[y]) ** 2).sum() for f, y in pixels)
    return lam * 0.5 * total / max(len(pixels), 1)


def wen_delta(features, labels, centers):
    """Wen et al.'s centre update ``sum_{y_i=j} (c_j - f_i) / (1 + n_j)`` per class."""
    delta = torch.zeros_like(centers)
    counts = [0] * centers.shape[0]
    for f, y in iter_pixels(features, labels):
        delta[y] += centers[y] - f
        counts[y] += 1
    return delta / (1 + torch.tensor(counts, dtype=centers.dtype))[:, None]


@pytest.mark.parametrize("decoupled", [True, False])
def test_value_and_gradients_match_slow_loop(decoupled):
    features, labels = make_batch(dtype=torch.float64)
    reg = CenterLossRegularizer(4, 5, lambda_center=0.2, decoupled=decoupled).double()
    with torch.no_grad():
        reg.centers.normal_()
    loss = reg(features, labels)
    loss.backward()

    centers = reg.centers.detach().clone().requires_grad_()
    feats = features.detach().clone().requires_grad_()
    ref = slow_center_loss(feats, labels, centers, 0.2)
    ref.backward()
    assert math.isclose(loss.item(), ref.item(), rel_tol=1e-10)
    assert reg.last_stats == {"loss_center": pytest.approx(ref.item(), rel=1e-10)}
    torch.testing.assert_close(features.grad, feats.grad)  # lam (f - c_y) / N, 0 where ignored
    expected = wen_delta(feats.detach(), labels, centers.detach()) if decoupled else centers.grad
    torch.testing.assert_close(reg.centers.grad, expected)


def test_hand_computed_vector_case():
    reg = CenterLossRegularizer(2, 2, dense=False, lambda_center=1.0)
    with torch.no_grad():
        reg.centers.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    features = torch.tensor([[3.0, 4.0], [1.0, 1.0], [9.0, 9.0]])
    # |(3, 4) - (0, 0)|^2 = 25, |(1, 1) - (1, 1)|^2 = 0; the third sample is ignored.
    loss = reg(features, torch.tensor([0, 1, 255]))
    assert loss.item() == pytest.approx(0.5 * 25 / 2)


class TinyModule(nn.Module):
    """Stands in for the LightningModule: its optimizer is built from ``self.parameters()``."""

    def __init__(self, regularizer):
        super().__init__()
        self.backbone = nn.Conv2d(3, 5, 1)
        self.classifier = nn.Conv2d(5, 4, 1)
        self.regularizer = regularizer


def test_an_optimizer_over_the_containing_module_moves_the_centres():
    reg = build_regularizer("center", 4, 5, dense=True)
    module = TinyModule(reg)
    assert "regularizer.centers" in dict(module.named_parameters())
    alpha = 0.5
    opt = torch.optim.SGD(module.parameters(), lr=alpha)
    images, labels = torch.randn(2, 3, 4, 4), torch.randint(0, 4, (2, 4, 4))
    labels[0, 0] = 255
    feats = module.backbone(images)
    before = reg.centers.detach().clone()
    delta = wen_delta(feats.detach(), labels, before)
    opt.zero_grad()
    reg(feats, labels).backward()
    opt.step()
    assert not torch.equal(reg.centers.detach(), before)
    # One SGD step of learning rate alpha is Wen et al.'s update c <- c - alpha * delta_c.
    torch.testing.assert_close(reg.centers.detach(), before - alpha * delta)


def test_centres_converge_to_the_class_means():
    reg = CenterLossRegularizer(3, 2, dense=False)
    opt = torch.optim.SGD(reg.parameters(), lr=0.5)
    features = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 5.0], [-2.0, -2.0]])
    labels = torch.tensor([0, 0, 1, 2])
    for _ in range(60):
        opt.zero_grad()
        reg(features, labels).backward()
        opt.step()
    expected = torch.tensor([[2.0, 0.0], [0.0, 5.0], [-2.0, -2.0]])
    torch.testing.assert_close(reg.centers.detach(), expected, atol=1e-4, rtol=0)


def test_edge_cases_are_finite_and_state_dict_holds_the_centres():
    reg = CenterLossRegularizer(3, 4)
    features = torch.randn(2, 4, 3, 3, requires_grad=True)
    for labels in (torch.full((2, 6, 6), 255), torch.ones(2, 6, 6, dtype=torch.long)):
        reg.zero_grad()
        loss = reg(features, labels)
        grads = torch.autograd.grad(loss, [features, reg.centers])
        assert torch.isfinite(loss) and all(torch.isfinite(g).all() for g in grads)
    assert reg(features, torch.full((2, 6, 6), 255)).item() == 0.0
    assert set(reg.state_dict()) == {"centers"}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = reg(features.bfloat16(), torch.ones(2, 6, 6, dtype=torch.long))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_constructor_and_registry_reject_bad_options():
    with pytest.raises(ValueError, match=r"`lambda_center` must lie in \[0.0, inf\), got -1.0"):
        CenterLossRegularizer(3, 4, lambda_center=-1.0)
    with pytest.raises(
        ValueError,
        match=r"regularizer 'center' does not take option\(s\) \['alpha'\]; valid options: "
        r"\['lambda_center', 'decoupled', 'ignore_index', 'validate'\]",
    ):
        build_regularizer("center", 3, 4, dense=True, alpha=0.5)
