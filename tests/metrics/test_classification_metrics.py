"""ClassificationMetrics against sklearn accuracy, per-class recall and top-k accuracy."""

import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    recall_score,
    top_k_accuracy_score,
)

from semantic_anchors.metrics import ClassificationMetrics

C = 8  # class 7 never in the targets, predicted sometimes


def _random_scores(seed, n=200):
    gen = torch.Generator().manual_seed(seed)
    target = torch.randint(0, C - 1, (n,), generator=gen)
    logits = torch.randn(n, C, generator=gen)
    logits[torch.arange(n), target] += 1.0  # better than chance
    return logits, target


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_sklearn(seed):
    logits, target = _random_scores(seed)
    metric = ClassificationMetrics(num_classes=C)
    for chunk in range(4):  # streamed in uneven batches
        sl = slice(chunk * 60, (chunk + 1) * 60)
        metric.update(logits[sl], target[sl])
    got = metric.compute()
    y_true, y_pred = target.numpy(), logits.argmax(1).numpy()
    assert 7 in y_pred and 7 not in y_true

    assert float(got["top1"]) == pytest.approx(100 * accuracy_score(y_true, y_pred), rel=1e-12)
    recall = 100 * recall_score(
        y_true, y_pred, labels=list(range(C)), average=None, zero_division=np.nan
    )
    np.testing.assert_allclose(got["Acc"].numpy(), recall, rtol=1e-12)
    assert math.isnan(float(got["Acc"][7]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "y_pred contains classes not in y_true"
        balanced = 100 * balanced_accuracy_score(y_true, y_pred)
    assert float(got["mAcc"]) == pytest.approx(balanced, rel=1e-12)
    top5 = 100 * top_k_accuracy_score(y_true, logits.numpy(), k=5, labels=list(range(C)))
    assert float(got["top5"]) == pytest.approx(top5, rel=1e-12)


def test_groups_hand_computed():
    target = torch.tensor([0, 0, 1, 1, 1, 1, 2, 3])
    preds = torch.tensor([0, 1, 1, 1, 0, 0, 0, 3])
    groups = {"head": [0, 1], "body": [2], "tail": [3, 4]}
    metric = ClassificationMetrics(num_classes=5, groups=groups)
    metric.update(preds, target)
    got = metric.compute()
    # per-class: 0 -> 50, 1 -> 50, 2 -> 0, 3 -> 100, 4 -> NaN
    torch.testing.assert_close(
        got["Acc"],
        torch.tensor([50.0, 50.0, 0.0, 100.0, math.nan], dtype=torch.float64),
        equal_nan=True,
    )
    assert float(got["top1"]) == pytest.approx(50.0)
    assert float(got["mAcc"]) == pytest.approx(50.0)
    assert float(got["head_Acc"]) == pytest.approx(50.0)
    assert float(got["body_Acc"]) == 0.0
    assert float(got["tail_Acc"]) == pytest.approx(100.0)


def test_top5_only_for_scores_and_enough_classes():
    logits, target = _random_scores(0, n=20)
    small = ClassificationMetrics(num_classes=4)
    small.update(torch.randn(3, 4), torch.tensor([0, 1, 2]))
    assert "top5" not in small.compute()

    labels_only = ClassificationMetrics(num_classes=C)
    labels_only.update(logits.argmax(1), target)
    assert math.isnan(float(labels_only.compute()["top5"]))

    mixed = ClassificationMetrics(num_classes=C)
    mixed.update(logits[:10], target[:10])
    mixed.update(logits[10:].argmax(1), target[10:])
    assert math.isnan(float(mixed.compute()["top5"]))  # not silently over half the data

    top3 = ClassificationMetrics(num_classes=C, top_k=3)
    top3.update(logits, target)
    expected = 100 * top_k_accuracy_score(
        target.numpy(), logits.numpy(), k=3, labels=list(range(C))
    )
    assert float(top3.compute()["top3"]) == pytest.approx(expected)
    no_topk = ClassificationMetrics(num_classes=C, top_k=None)
    no_topk.update(logits, target)
    assert "top5" not in no_topk.compute()


def test_logits_and_labels_give_same_confusion():
    logits, target = _random_scores(5)
    a, b = ClassificationMetrics(num_classes=C), ClassificationMetrics(num_classes=C)
    a.update(logits, target)
    b.update(logits.argmax(1), target)
    assert torch.equal(a.confusion_matrix, b.confusion_matrix)


def test_per_class_table():
    metric = ClassificationMetrics(num_classes=3, groups={"tail": [2]})
    metric.update(torch.tensor([0, 1, 1, 2]), torch.tensor([0, 0, 1, 1]))
    rows = metric.per_class_table(["a", "b", "c"])
    assert rows[1] == {
        "index": 1, "class": "b", "group": "", "Acc": 50.0, "samples": 2, "predicted": 2,
    }  # fmt: skip
    assert rows[2]["group"] == "tail" and math.isnan(rows[2]["Acc"]) and rows[2]["predicted"] == 1


@pytest.mark.parametrize(
    ("preds", "target", "match"),
    [
        (torch.zeros(4, 3), torch.zeros(5, dtype=torch.long), r"preds: expected logits of shape \(5, 3\).*\(4, 3\)"),
        (torch.zeros(4, 2), torch.zeros(4, dtype=torch.long), r"preds: expected logits of shape \(4, 3\).*\(4, 2\)"),
        (torch.zeros(4), torch.zeros(4, dtype=torch.long), r"preds: expected integer labels"),
        (torch.zeros(4, dtype=torch.long), torch.zeros(4), r"target: expected an integer tensor.*float32"),
        (torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.bool), r"target: .*torch.bool"),
        (torch.zeros(2, 2, dtype=torch.long), torch.zeros(2, 2, dtype=torch.long), r"target: expected integer labels of shape \(B,\)"),
        (torch.zeros(2, dtype=torch.long), torch.tensor([0, 3]), r"target: expected class labels in \[0, 3\).*\[3\]"),
        (torch.zeros(2, dtype=torch.long), torch.tensor([0, 255]), r"target: .*\[255\]"),
        (torch.tensor([5, 0]), torch.tensor([0, 1]), r"preds: expected class labels in \[0, 3\).*\[5\]"),
        (torch.tensor([[0.0, math.inf, 0.0]]), torch.tensor([0]), r"preds: expected finite"),
    ],
)  # fmt: skip
def test_update_rejects_bad_input(preds, target, match):
    metric = ClassificationMetrics(num_classes=3)
    with pytest.raises(ValueError, match=match):
        metric.update(preds, target)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_classes": 0}, r"num_classes: expected an int >= 2, received 0"),
        ({"num_classes": 4, "groups": {"head": [0, 9]}}, r"groups\['head'\].*\[9\]"),
        ({"num_classes": 4, "top_k": 1}, r"top_k: expected an int >= 2 or None, received 1"),
    ],
)
def test_constructor_rejects_bad_args(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ClassificationMetrics(**kwargs)
