import math

import pytest
import torch
import torch.nn.functional as F

from semantic_anchors import ClassAwareRegularizer
from semantic_anchors.regularizers.registry import build_regularizer
from tests._helpers.references import iter_pixels, make_batch


def slow_car(
    features, labels, num_classes, *, c2c_t=0.5, c2p_t=0.25, include_absent=False, sg_keys=True
):
    """Per-pixel / per-class loops; differentiable so the gradients can be compared as well.

    Returns ``(intra, c2c, c2p)``; the detaches sit exactly where the CAR code puts its
    stop-gradients (intra and c2p targets, c2c keys).
    """
    d = features.shape[1]
    pixels = list(iter_pixels(features, labels))
    sums, counts = {}, {}
    for f, y in pixels:
        sums[y] = sums.get(y, 0) + f
        counts[y] = counts.get(y, 0) + 1
    centre = {k: sums[k] / counts[k] for k in sums}
    zero = features.new_zeros(d)
    used = list(range(num_classes)) if include_absent else sorted(centre)
    cen = {k: centre.get(k, zero) for k in used}
    n, k_used = len(pixels), len(used)
    if n == 0:
        return 0.0, 0.0, 0.0

    l1 = sum(sum(abs(f[j] - cen[y].detach()[j]) for j in range(d)) for f, y in pixels)
    intra = (l1 / (n * d)) ** 2

    scale = 1 / math.sqrt(d)
    c2c_thr = c2c_t / max(k_used - 1, 1)
    total = 0.0
    for k in used:
        keys = {j: cen[j].detach() if sg_keys else cen[j] for j in used}
        expo = {j: torch.exp(torch.dot(cen[k], keys[j]) * scale) for j in used}
        denom = sum(expo.values())
        total = total + sum(torch.relu(expo[j] / denom - c2c_thr) for j in used if j != k)
    c2c = (total / k_used) ** 2

    c2p_thr = c2p_t / max(k_used - 1, 1)
    total = 0.0
    for f, y in pixels:
        energy = {
            j: (cen[j].detach().square().sum() if j == y else torch.dot(f, cen[j].detach()))
            for j in used
        }
        expo = {j: torch.exp(e * scale) for j, e in energy.items()}
        denom = sum(expo.values())
        total = total + sum(torch.relu(expo[j] / denom - c2p_thr) for j in used if j != y)
    c2p = (total / n) ** 2
    return intra, c2c, c2p


def car_sum(intra, c2c, c2p, lambda_intra=1.0, lambda_inter=1.0):
    return lambda_intra * intra + lambda_inter * (c2c + c2p)


@pytest.mark.parametrize("include_absent", [False, True])
def test_matches_slow_loop_values_and_gradients(include_absent):
    features, labels = make_batch(dtype=torch.float64)
    features = (features.detach() * 0.3).requires_grad_()  # similar centres: hinges are active
    labels[labels == 3] = 1  # class 3 absent
    car = ClassAwareRegularizer(
        4, 5, lambda_intra=0.7, lambda_inter=1.3, include_absent=include_absent
    ).double()
    loss = car(features, labels)
    (grad,) = torch.autograd.grad(loss, features)

    ref = slow_car(features, labels, 4, include_absent=include_absent)
    assert all(part.item() > 0 for part in ref)  # every term is exercised
    ref_loss = car_sum(*ref, lambda_intra=0.7, lambda_inter=1.3)
    (ref_grad,) = torch.autograd.grad(ref_loss, features)
    assert math.isclose(loss.item(), ref_loss.item(), rel_tol=1e-9)
    torch.testing.assert_close(grad, ref_grad)
    stats = car.last_stats
    assert stats["loss_intra"] == pytest.approx(0.7 * ref[0].item(), rel=1e-9)
    assert stats["loss_c2c"] == pytest.approx(1.3 * ref[1].item(), rel=1e-9)
    assert stats["loss_c2p"] == pytest.approx(1.3 * ref[2].item(), rel=1e-9)
    assert stats["num_present"] == 3


def test_vector_form_matches_slow_loop():
    features = (0.2 * torch.randn(9, 4, dtype=torch.float64)).requires_grad_()
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 255, 0, 1])
    car = ClassAwareRegularizer(3, 4, dense=False).double()
    loss = car(features, labels)
    ref = car_sum(*slow_car(features, labels, 3))
    assert math.isclose(loss.item(), ref.item(), rel_tol=1e-9)


def test_hand_computed_two_classes():
    # Class 0 at (1, 0) and (3, 0): centre (2, 0); class 1 at (0, 2): centre (0, 2). D = 2.
    features = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1])
    intra_only = ClassAwareRegularizer(2, 2, dense=False, inter_c2c=False, inter_c2p=False)
    # |1-2| + |3-2| over N*D = 6 values, squared.
    assert intra_only.double()(features, labels).item() == pytest.approx((2 / 6) ** 2)
    c2c_only = ClassAwareRegularizer(
        2, 2, dense=False, lambda_intra=0.0, inter_c2p=False, c2c_threshold=0.0
    ).double()
    # Centre similarities / sqrt(2): [[4, 0], [0, 4]] * s; off-diagonal softmax 1 / (1 + e^{4s}).
    other = 1 / (1 + math.exp(4 / math.sqrt(2)))
    assert c2c_only(features, labels).item() == pytest.approx(other**2)
    # With the default threshold 0.5 / (K - 1) = 0.5 nothing is penalised.
    assert ClassAwareRegularizer(2, 2, dense=False, lambda_intra=0.0).double()(
        features, labels
    ).item() == pytest.approx(0.0, abs=1e-12)


def test_intra_loss_treats_centres_as_constants():
    features, labels = make_batch(dtype=torch.float64)
    car = ClassAwareRegularizer(4, 5, inter_c2c=False, inter_c2p=False).double()
    loss = car(features, labels)
    loss.backward()
    # d/df (mean |f - sg(c_y)|)^2 = 2 * mean * sign(f - c_y) / (N D): nothing flows via c_y.
    valid = labels != 255
    n, d = int(valid.sum()), 5
    centres = {}
    for k in range(4):
        mask = labels == k
        if mask.any():
            centres[k] = features.detach().permute(0, 2, 3, 1)[mask].mean(0)
    target = torch.zeros_like(features).permute(0, 2, 3, 1)
    for k, c in centres.items():
        target[labels == k] = c
    diff = features.detach() - target.permute(0, 3, 1, 2)
    expected = 2 * math.sqrt(loss.item()) * diff.sign() / (n * d) * valid[:, None]
    torch.testing.assert_close(features.grad, expected)


def test_c2c_gradient_flows_through_the_query_centres_only():
    features, labels = make_batch(dtype=torch.float64)
    features = (features.detach() * 0.3).requires_grad_()
    car = ClassAwareRegularizer(4, 5, lambda_intra=0.0, inter_c2p=False).double()
    (grad,) = torch.autograd.grad(car(features, labels), features)
    assert grad.abs().sum() > 0
    assert torch.equal(grad * (labels == 255)[:, None], torch.zeros_like(grad))
    # Same as the loop with detached keys, and not as the one where the keys carry gradient.
    _, with_sg, _ = slow_car(features, labels, 4)
    torch.testing.assert_close(grad, torch.autograd.grad(with_sg, features)[0])
    _, without_sg, _ = slow_car(features, labels, 4, sg_keys=False)
    assert not torch.allclose(grad, torch.autograd.grad(without_sg, features)[0])


@pytest.mark.parametrize(
    "labels",
    [
        torch.full((2, 6, 6), 255),  # every pixel ignored
        torch.full((2, 6, 6), 2),  # a single class
        torch.tensor([[[0, 255], [255, 255]]] * 2).repeat_interleave(3, 1).repeat_interleave(3, 2),
    ],
)
@pytest.mark.parametrize("include_absent", [False, True])
def test_edge_cases_are_finite(labels, include_absent):
    car = ClassAwareRegularizer(3, 4, include_absent=include_absent)
    features = torch.randn(2, 4, 3, 3, requires_grad=True)
    loss = car(features, labels)
    (grad,) = torch.autograd.grad(loss, features)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    if not include_absent:  # fewer than two classes: no inter-class term at all
        assert car.last_stats["loss_c2c"] == 0.0 and car.last_stats["loss_c2p"] == 0.0
    if bool((labels == 255).all()):
        assert torch.equal(grad, torch.zeros_like(grad))
        # The authors' zero centres give a constant c2c term: ((C - 1) (1/C - 0.5/(C - 1)))^2.
        assert loss.item() == pytest.approx((2 * (1 / 3 - 0.25)) ** 2 if include_absent else 0.0)


def test_labels_resized_by_nearest_and_bf16_autocast():
    car = ClassAwareRegularizer(3, 4)
    features = torch.randn(2, 4, 3, 3)
    full = torch.randint(0, 3, (2, 12, 12))
    small = F.interpolate(full[:, None].float(), size=(3, 3), mode="nearest")[:, 0].long()
    assert torch.equal(car(features, full), car(features, small))
    leaf = features.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        feats = F.conv2d(leaf, torch.eye(4)[:, :, None, None])  # bf16 under autocast
        loss = car(feats, full)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert torch.isfinite(leaf.grad).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lambda_intra": -1.0}, r"`lambda_intra` must lie in \[0.0, inf\), got -1.0"),
        ({"lambda_inter": float("nan")}, r"`lambda_inter` must lie in"),
        ({"c2c_threshold": 1.5}, r"`c2c_threshold` must lie in \[0.0, 1.0\], got 1.5"),
        ({"c2p_threshold": -0.1}, r"`c2p_threshold` must lie in \[0.0, 1.0\]"),
    ],
)
def test_constructor_rejects(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ClassAwareRegularizer(3, 4, **kwargs)


def test_registry_builds_and_rejects_unknown_options():
    car = build_regularizer("car", 5, 8, dense=True, inter_c2p=False)
    assert isinstance(car, ClassAwareRegularizer) and not car.inter_c2p
    assert list(car.parameters()) == [] and list(car.buffers()) == []
    with pytest.raises(
        ValueError, match=r"regularizer 'car' does not take option\(s\) \['use_inter_c2p_loss'\]"
    ):
        build_regularizer("car", 5, 8, dense=True, use_inter_c2p_loss=True)
    with pytest.raises(ValueError, match=r"`features` must be \(B, D, h, w\) dense features"):
        car(torch.randn(2, 8), torch.zeros(2, dtype=torch.long))
