import pytest
import torch

from semantic_anchors import FixedAnchorRegularizer, SemanticAnchorRegularizer
from semantic_anchors.regularizers.registry import REGULARIZERS, build_regularizer

HEAD = torch.nn.Conv2d(6, 3, 1)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_classes": 1}, ValueError, r"`num_classes` must be an int >= 2, got 1"),
        ({"feat_dim": 0}, ValueError, r"`feat_dim` must be an int >= 1, got 0"),
        ({"tau": 0.0}, ValueError, r"`tau` must lie in \(0.0, 1.0\], got 0.0"),
        ({"tau": 1.5}, ValueError, r"`tau` must lie in \(0.0, 1.0\], got 1.5"),
        ({"delta": -0.1}, ValueError, r"`delta` must lie in \(0.0, 1.0\]"),
        ({"momentum": 1.0}, ValueError, r"`momentum` must lie in \[0.0, 1.0\), got 1.0"),
        ({"momentum": -0.5}, ValueError, r"`momentum` must lie in \[0.0, 1.0\)"),
        ({"lambda_p2a": -1.0}, ValueError, r"`lambda_p2a` must lie in \[0.0, inf\)"),
        ({"lambda_aux": float("nan")}, ValueError, r"`lambda_aux` must lie in"),
        ({"gate": "any"}, ValueError, r"`gate` must be one of \['all', 'class'\], got 'any'"),
        (
            {"anchors": torch.randn(4, 6)},
            ValueError,
            r"\(num_classes, T\) = \(3, T\).* got \(4, 6\)",
        ),
        ({"anchors": torch.randn(3)}, ValueError, r"\(3, T\).* got \(3,\)"),
        ({"anchors": "text"}, ValueError, r'make_anchors\("text"'),
        ({"anchors": "uniform"}, ValueError, r"`anchors` must be one of"),
        ({"tau": "0.9"}, TypeError, r"`tau` must be a float"),
        ({"num_classes": 3.0}, TypeError, r"`num_classes` must be an int"),
    ],
)
def test_constructor_rejects(kwargs, error, match):
    args = {"num_classes": 3, "feat_dim": 6, **kwargs}
    with pytest.raises(error, match=match):
        SemanticAnchorRegularizer(**args)


def call(features, labels, classifier=HEAD, **kwargs):
    return SemanticAnchorRegularizer(3, 6, **kwargs)(features, labels, classifier)


@pytest.mark.parametrize(
    ("features", "labels", "kwargs", "error", "match"),
    [
        (torch.randn(2, 6, 4), torch.zeros(2, 4, 4, dtype=torch.long), {}, ValueError,
         r"`features` must be \(B, D, h, w\) dense features \(rank 4\), got shape \(2, 6, 4\)"),
        (torch.randn(2, 5, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long), {}, ValueError,
         r"feat_dim=6 channels in dim 1, got 5"),
        (torch.randn(3, 6, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long), {}, ValueError,
         r"`labels` batch size must match `features` \(3\), got 2"),
        (torch.randn(2, 6, 4, 4), torch.zeros(2, 4, 4), {}, ValueError,
         r"`labels` must hold integer class indices .* got dtype torch.float32"),
        (torch.randn(2, 6, 4, 4), torch.full((2, 4, 4), 3), {}, ValueError,
         r"`labels` must be in \[0, 2\] or 255, got values \[3\]"),
        (torch.randn(2, 6, 4, 4), torch.full((2, 4, 4), -1), {}, ValueError,
         r"got values \[-1\]"),
        (torch.full((2, 6, 4, 4), float("nan")), torch.zeros(2, 4, 4, dtype=torch.long), {},
         ValueError, r"`features` must be finite, got 192 non-finite"),
        (torch.randn(2, 6, 4, 4), torch.zeros(2, 4, dtype=torch.long), {}, ValueError,
         r"`labels` must have shape \(B, H, W\), got \(2, 4\)"),
        (torch.randn(2, 6, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long), {"dense": False},
         ValueError, r"\(B, D\) vector features .* need a regularizer built with dense=True"),
        (torch.randn(2, 6, 4, 4).long(), torch.zeros(2, 4, 4, dtype=torch.long), {}, ValueError,
         r"`features` must be floating point"),
        ([[1.0]], torch.zeros(2, 4, 4, dtype=torch.long), {}, TypeError,
         r"`features` must be a torch.Tensor, got \[\[1.0\]\]"),
    ],
)  # fmt: skip
def test_forward_rejects(features, labels, kwargs, error, match):
    with pytest.raises(error, match=match):
        call(features, labels, **kwargs)


def test_classifier_problems():
    feats, labels = torch.randn(2, 6, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long)
    with pytest.raises(
        ValueError, match=r"must map the \(3, 6\) anchors to \(3, 3\) logits.*got \(3, 5\)"
    ):
        call(feats, labels, torch.nn.Conv2d(6, 5, 1))
    with pytest.raises(ValueError, match=r"takes 8 input features but .* feat_dim=6"):
        call(feats, labels, torch.nn.Linear(8, 3))
    with pytest.raises(ValueError, match=r"`classifier` is required by SemanticAnchorRegularizer"):
        call(feats, labels, None)
    with pytest.raises(TypeError, match=r"`classifier` must be callable"):
        call(feats, labels, "head")


def test_validate_false_skips_syncing_checks():
    feats = torch.randn(2, 6, 4, 4)
    feats[0, 0, 0, 0] = float("nan")
    labels = torch.zeros(2, 4, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="must be finite"):
        call(feats, labels)
    # Without validation the finiteness check (a device sync) is skipped: no error is raised.
    call(feats, labels, validate=False)
    # Shape and dtype checks cost nothing and stay on.
    with pytest.raises(ValueError, match="integer class indices"):
        call(feats, labels.float(), validate=False)


def test_fixed_anchor_rejects_like_sar():
    with pytest.raises(ValueError, match=r"feat_dim=6 channels in dim 1, got 4"):
        FixedAnchorRegularizer(3, 6)(
            torch.randn(2, 4, 3, 3), torch.zeros(2, 3, 3, dtype=torch.long)
        )
    with pytest.raises(ValueError, match=r"anchors='etf' needs feat_dim >= num_classes - 1 = 9"):
        FixedAnchorRegularizer(10, 6, anchors="etf")


REGULARIZER_NAMES = [name for name, cls in REGULARIZERS.items() if cls is not None]


@pytest.mark.parametrize("name", REGULARIZER_NAMES)
@pytest.mark.parametrize("ignore_index", [0, 7, 255])
def test_ignore_index_that_is_a_class_is_refused(name, ignore_index):
    """1000 classes with the default 255 would silently drop class 255: refused at construction."""
    with pytest.raises(ValueError, match=rf"`ignore_index` must not be a valid class index in "
                       rf"\[0, 999\] \(num_classes=1000\): got {ignore_index}.*-1.*None"):  # fmt: skip
        build_regularizer(name, 1000, 1000, dense=False, ignore_index=ignore_index)


def test_default_ignore_index_with_more_than_255_classes():
    with pytest.raises(ValueError, match=r"got 255, which would silently ignore class 255"):
        SemanticAnchorRegularizer(num_classes=1000, feat_dim=16, dense=False)


@pytest.mark.parametrize("name", REGULARIZER_NAMES)
@pytest.mark.parametrize("ignore_index", [-1, None, 300])
def test_ignore_index_outside_the_classes_is_accepted(name, ignore_index):
    reg = build_regularizer(name, 300, 300, dense=False, ignore_index=ignore_index)
    assert reg.ignore_index == ignore_index
    labels = torch.tensor([0, 255, 299, 1])
    if ignore_index is not None:
        labels[1] = ignore_index  # an ignored sample among valid ones (255 is a class here)
    features = torch.randn(4, 300, requires_grad=True)
    loss = reg(features, labels, torch.nn.Linear(300, 300))
    assert torch.isfinite(loss)


def test_ignore_index_type_is_checked():
    with pytest.raises(TypeError, match=r"`ignore_index` must be an int, got '255'"):
        SemanticAnchorRegularizer(3, 6, ignore_index="255")


@pytest.mark.parametrize(
    ("features", "labels", "dense", "match"),
    [
        (torch.randn(2, 6, 0, 0), torch.zeros(2, 8, 8, dtype=torch.long), True,
         r"`features` must be \(B, D, h, w\) dense features with every size >= 1 .* got shape "
         r"\(2, 6, 0, 0\)"),
        (torch.randn(2, 6, 4, 0), torch.zeros(2, 8, 8, dtype=torch.long), True,
         r"`features` .* got shape \(2, 6, 4, 0\)"),
        (torch.randn(0, 6, 4, 4), torch.zeros(0, 8, 8, dtype=torch.long), True,
         r"`features` .*no empty batch.* got shape \(0, 6, 4, 4\)"),
        (torch.randn(2, 6, 4, 4), torch.zeros(2, 0, 8, dtype=torch.long), True,
         r"`labels` must be \(B, H, W\) labels with every size >= 1 .* got shape \(2, 0, 8\)"),
        (torch.randn(0, 6), torch.zeros(0, dtype=torch.long), False,
         r"`features` must be \(B, D\) vector features with every size >= 1 .* \(0, 6\)"),
    ],
)  # fmt: skip
def test_zero_sized_inputs_are_named(features, labels, dense, match):
    head = torch.nn.Conv2d(6, 3, 1) if dense else torch.nn.Linear(6, 3)
    for name in REGULARIZER_NAMES:
        reg = build_regularizer(name, 3, 6, dense=dense)
        with pytest.raises(ValueError, match=match):
            reg(features, labels, head)
