"""Functional confusion-matrix maths against sklearn and hand-computed values."""

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from semantic_anchors.functional.confusion import (
    accuracy_from_confusion,
    confusion_matrix,
    group_means,
    iou_from_confusion,
    overall_accuracy_from_confusion,
    validate_groups,
)


@pytest.mark.parametrize("shape", [(13,), (2, 5, 7), (3, 1, 4, 4)])
def test_confusion_matrix_matches_sklearn_any_shape(shape):
    gen = torch.Generator().manual_seed(0)
    target = torch.randint(0, 5, shape, generator=gen)
    target[torch.rand(shape, generator=gen) < 0.2] = -1  # ignored
    preds = torch.randint(0, 5, shape, generator=gen)
    got = confusion_matrix(preds, target, num_classes=5, ignore_index=-1)
    keep = target.reshape(-1) != -1
    expected = sk_confusion_matrix(
        target.reshape(-1)[keep].numpy(), preds.reshape(-1)[keep].numpy(), labels=list(range(5))
    )
    assert got.dtype == torch.long
    np.testing.assert_array_equal(got.numpy(), expected)


def test_rates_from_hand_made_matrix():
    confmat = torch.tensor([[5, 1, 0, 0], [2, 2, 0, 0], [0, 3, 0, 0], [0, 0, 0, 0]])
    # class 2: in ground truth, never predicted -> IoU 0, Acc 0; class 3: absent -> NaN
    iou = iou_from_confusion(confmat)
    torch.testing.assert_close(
        iou,
        torch.tensor([500 / 8, 200 / 8, 0.0, float("nan")], dtype=torch.float64),
        equal_nan=True,
    )
    acc = accuracy_from_confusion(confmat)
    torch.testing.assert_close(
        acc, torch.tensor([500 / 6, 50.0, 0.0, float("nan")], dtype=torch.float64), equal_nan=True
    )
    assert float(overall_accuracy_from_confusion(confmat)) == pytest.approx(700 / 13)
    assert torch.isnan(overall_accuracy_from_confusion(torch.zeros(3, 3, dtype=torch.long)))


def test_predicted_but_absent_class_has_zero_iou_and_nan_acc():
    confmat = torch.tensor([[1, 1], [0, 0]])
    assert iou_from_confusion(confmat).tolist()[1] == 0.0
    assert torch.isnan(accuracy_from_confusion(confmat)[1])


def test_group_means_ignore_nan_and_empty_groups():
    values = torch.tensor([10.0, float("nan"), 30.0, float("nan")])
    means = group_means(values, {"a": (0, 2), "b": (1,), "c": (), "d": (1, 2)})
    assert float(means["a"]) == 20.0
    assert torch.isnan(means["b"]) and torch.isnan(means["c"])
    assert float(means["d"]) == 30.0


def test_validate_groups_normalises():
    groups = validate_groups({"tail": torch.tensor([3, 1, 1]), "head": [0]}, num_classes=4)
    assert groups == {"tail": (1, 3), "head": (0,)}
    assert validate_groups(None, 4) == {}


@pytest.mark.parametrize(
    ("groups", "match"),
    [
        ({"tail": [4]}, r"groups\['tail'\].*\[0, 4\).*\[4\]"),
        ({"tail": [-1]}, r"groups\['tail'\]"),
        ({"tail": [1.0]}, r"groups\['tail'\]"),
        ({"tail": "12"}, r"groups\['tail'\]: expected a sequence"),
        ({"tail": torch.tensor([0.5])}, r"groups\['tail'\].*integer"),
        ({"": [0]}, "non-empty string"),
        ([[0, 1]], "mapping"),
    ],
)
def test_validate_groups_rejects(groups, match):
    with pytest.raises(ValueError, match=match):
        validate_groups(groups, num_classes=4)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_classes": 1}, r"num_classes: expected an int >= 2, received 1"),
        ({"num_classes": 2.0}, "num_classes"),
        ({"num_classes": 3, "ignore_index": 1}, r"ignore_index: .*\[0, 3\).*received 1"),
    ],
)
def test_confusion_matrix_rejects_bad_args(kwargs, match):
    with pytest.raises(ValueError, match=match):
        confusion_matrix(
            torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long), **kwargs
        )


def test_square_matrix_required():
    with pytest.raises(ValueError, match=r"confmat: expected a square"):
        iou_from_confusion(torch.zeros(2, 3))
