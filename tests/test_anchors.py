import pytest
import torch

from semantic_anchors import make_anchors


@pytest.mark.parametrize("kind", ["normal", "orthogonal", "etf"])
def test_shape_dtype_and_generator_determinism(kind):
    a = make_anchors(kind, 5, 12, generator=torch.Generator().manual_seed(3))
    b = make_anchors(kind, 5, 12, generator=torch.Generator().manual_seed(3))
    c = make_anchors(kind, 5, 12, generator=torch.Generator().manual_seed(4))
    assert a.shape == (5, 12) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_normal_is_standard_normal():
    a = make_anchors("normal", 200, 256, generator=torch.Generator().manual_seed(0))
    assert abs(a.mean().item()) < 0.01
    assert abs(a.std().item() - 1.0) < 0.01


def test_orthogonal_rows_are_orthonormal():
    a = make_anchors("orthogonal", 7, 16).double()
    torch.testing.assert_close(a @ a.T, torch.eye(7, dtype=torch.float64), atol=1e-6, rtol=0)


def test_orthogonal_more_classes_than_dims_warns_and_has_orthonormal_columns():
    with pytest.warns(UserWarning, match="orthonormal COLUMNS"):
        a = make_anchors("orthogonal", 10, 4).double()
    torch.testing.assert_close(a.T @ a, torch.eye(4, dtype=torch.float64), atol=1e-6, rtol=0)


@pytest.mark.parametrize(("c", "d"), [(2, 1), (3, 2), (19, 18), (19, 512), (150, 512)])
def test_etf_unit_norm_and_equiangular(c, d):
    a = make_anchors("etf", c, d).double()
    gram = a @ a.T
    torch.testing.assert_close(
        torch.diagonal(gram), torch.ones(c, dtype=torch.float64), atol=1e-5, rtol=0
    )
    off = gram[~torch.eye(c, dtype=torch.bool)]
    torch.testing.assert_close(off, torch.full_like(off, -1.0 / (c - 1)), atol=1e-5, rtol=0)
    # The vertices of a simplex centred at the origin sum to zero.
    torch.testing.assert_close(a.sum(0), torch.zeros(d, dtype=torch.float64), atol=1e-4, rtol=0)


def test_etf_needs_enough_dimensions():
    with pytest.raises(ValueError, match=r"feat_dim >= num_classes - 1 = 9.*got feat_dim=5"):
        make_anchors("etf", 10, 5)


def test_user_tensor_is_copied_as_float32():
    user = torch.randn(3, 4, dtype=torch.float64)
    a = make_anchors(user, 3, 4)
    assert a.dtype == torch.float32 and torch.allclose(a.double(), user)
    user.zero_()
    assert a.abs().sum() > 0


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        (
            ("cube", 3, 4),
            ValueError,
            r"`anchors` must be one of \['etf', 'normal', 'orthogonal', 'text'\], got 'cube'",
        ),
        (("normal", 1, 4), ValueError, r"`num_classes` must be an int >= 2, got 1"),
        (("normal", 3, 0), ValueError, r"`feat_dim` must be an int >= 1, got 0"),
        (("normal", 3.0, 4), TypeError, r"`num_classes` must be an int"),
        (
            (torch.randn(3, 5), 3, 4),
            ValueError,
            r"shape \(num_classes, feat_dim\) = \(3, 4\), got \(3, 5\)",
        ),
        ((torch.ones(3, 4, dtype=torch.long), 3, 4), TypeError, r"floating point"),
        ((torch.full((3, 4), float("nan")), 3, 4), ValueError, r"`anchors` must be finite"),
    ],
)
def test_bad_input(args, error, match):
    with pytest.raises(error, match=match):
        make_anchors(*args)
