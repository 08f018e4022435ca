import math

import pytest
import torch
import torch.nn.functional as F

import semantic_anchors.functional.p2a as p2a_module
from semantic_anchors.functional import pixel_to_anchor_loss, resize_labels
from tests._helpers.references import slow_p2a


@pytest.mark.parametrize("chunk", [1 << 20, 240, 7])  # all images; 2 images; 1 row
def test_matches_slow_loop_with_ignored_pixels(monkeypatch, chunk):
    monkeypatch.setattr(p2a_module, "_CHUNK_ELEMENTS", chunk)
    features = torch.randn(3, 5, 4, 6, dtype=torch.float64)
    labels = torch.randint(0, 4, (3, 4, 6))
    valid = torch.rand(3, 4, 6) > 0.3
    labels[~valid] = 255
    anchors = torch.randn(4, 5, dtype=torch.float64)
    got = pixel_to_anchor_loss(features, labels, anchors, valid)
    assert got.dtype == torch.float64  # at least float32; float64 features stay float64
    assert math.isclose(got.item(), slow_p2a(features, labels, anchors, valid), rel_tol=1e-10)


def test_vector_features_match_mse_reference():
    features = torch.randn(9, 6)
    labels = torch.randint(0, 3, (9,))
    anchors = torch.randn(3, 6)
    got = pixel_to_anchor_loss(features, labels, anchors)
    torch.testing.assert_close(got, F.mse_loss(features, anchors[labels]))


def test_gradcheck_float64():
    torch.manual_seed(1)
    features = torch.randn(2, 3, 3, 4, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 3, (2, 3, 4))
    valid = torch.rand(2, 3, 4) > 0.25
    anchors = torch.randn(3, 3, dtype=torch.float64)

    def fn(f):
        return pixel_to_anchor_loss(f, labels, anchors, valid)

    assert torch.autograd.gradcheck(fn, (features,))


def test_gradient_equals_autograd_of_naive_formula(monkeypatch):
    monkeypatch.setattr(p2a_module, "_CHUNK_ELEMENTS", 5)
    features = torch.randn(3, 4, 5, 5, requires_grad=True)
    labels = torch.randint(0, 6, (3, 5, 5))
    valid = torch.rand(3, 5, 5) > 0.5
    anchors = torch.randn(6, 4)
    pixel_to_anchor_loss(features, labels, anchors, valid).backward()
    ours = features.grad.clone()
    features.grad = None
    target = anchors[labels.clamp(max=5)].permute(0, 3, 1, 2)  # (B, D, h, w)
    naive = (((features - target) ** 2).mean(1) * valid).sum() / valid.sum()
    naive.backward()
    torch.testing.assert_close(ours, features.grad)


def test_nothing_valid_gives_finite_zero_and_zero_gradient():
    features = torch.randn(2, 3, 4, 4, requires_grad=True)
    labels = torch.full((2, 4, 4), 255)
    loss = pixel_to_anchor_loss(features, labels, torch.randn(3, 3), labels != 255)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(features.grad, torch.zeros_like(features))


def test_bf16_features_compute_in_float32():
    features = torch.randn(2, 8, 4, 4).bfloat16().requires_grad_()
    labels = torch.randint(0, 3, (2, 4, 4))
    anchors = torch.randn(3, 8)
    loss = pixel_to_anchor_loss(features, labels, anchors)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert features.grad.dtype == torch.bfloat16
    ref = F.mse_loss(features.float(), anchors[labels].permute(0, 3, 1, 2))
    torch.testing.assert_close(loss, ref)


def test_anchors_get_no_gradient():
    anchors = torch.randn(3, 4, requires_grad=True)
    features = torch.randn(2, 4, 3, 3, requires_grad=True)
    pixel_to_anchor_loss(features, torch.randint(0, 3, (2, 3, 3)), anchors).backward()
    assert anchors.grad is None and features.grad is not None


def test_resize_labels_matches_float_nearest_interpolation():
    labels = torch.randint(0, 19, (2, 37, 53))
    labels[:, :5] = 255
    expected = F.interpolate(labels[:, None].float(), size=(9, 13), mode="nearest")[:, 0].long()
    assert torch.equal(resize_labels(labels, (9, 13)), expected)
    assert torch.equal(resize_labels(labels, (37, 53)), labels)


@pytest.mark.parametrize(
    ("labels", "size", "match"),
    [
        (torch.zeros(2, 8, 8, dtype=torch.long), (0, 0),
         r"`size` must be the feature map's \(h, w\), two ints >= 1, got \(0, 0\)"),
        (torch.zeros(2, 8, 8, dtype=torch.long), (4, 0), r"`size` .* got \(4, 0\)"),
        (torch.zeros(2, 0, 8, dtype=torch.long), (4, 4),
         r"`labels` must be a \(B, H, W\) tensor with H, W >= 1, got shape \(2, 0, 8\)"),
        (torch.zeros(2, 8, dtype=torch.long), (4, 4), r"`labels` .* got shape \(2, 8\)"),
    ],
)  # fmt: skip
def test_resize_labels_names_zero_sized_maps(labels, size, match):
    with pytest.raises(ValueError, match=match):
        resize_labels(labels, size)


def test_resize_labels_keeps_an_empty_batch():
    assert resize_labels(torch.zeros(0, 8, 8, dtype=torch.long), (4, 4)).shape == (0, 4, 4)
