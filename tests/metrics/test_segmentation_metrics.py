"""SegmentationMetrics against sklearn on random data with ignored pixels and absent classes."""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, jaccard_score, recall_score
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from semantic_anchors.metrics import SegmentationMetrics

C = 7  # classes 0-4 in ground truth; 5 only predicted; 6 absent from both


def _random_batch(seed, batch=3, height=9, width=11):
    gen = torch.Generator().manual_seed(seed)
    target = torch.randint(0, 5, (batch, height, width), generator=gen)
    target[torch.rand(target.shape, generator=gen) < 0.15] = 255
    preds = torch.randint(0, 6, target.shape, generator=gen)
    preds[preds == 4] = 0  # class 4 is in the ground truth but never predicted
    return preds, target


def _sklearn_reference(preds, target):
    keep = target.reshape(-1) != 255
    y_true = target.reshape(-1)[keep].numpy()
    y_pred = preds.reshape(-1)[keep].numpy()
    labels = list(range(C))
    iou = 100 * jaccard_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    absent = ~np.isin(labels, np.union1d(y_true, y_pred))
    iou[absent] = np.nan  # sklearn has no NaN option for jaccard
    acc = 100 * recall_score(y_true, y_pred, labels=labels, average=None, zero_division=np.nan)
    return {
        "confmat": sk_confusion_matrix(y_true, y_pred, labels=labels),
        "IoU": iou,
        "Acc": acc,
        "aAcc": 100 * accuracy_score(y_true, y_pred),
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_sklearn_with_ignore_and_absent_classes(seed):
    preds, target = _random_batch(seed)
    metric = SegmentationMetrics(num_classes=C)
    metric.update(preds, target)
    got = metric.compute()
    ref = _sklearn_reference(preds, target)

    np.testing.assert_array_equal(metric.confusion_matrix.numpy(), ref["confmat"])
    np.testing.assert_allclose(got["IoU"].numpy(), ref["IoU"], rtol=1e-12)
    np.testing.assert_allclose(got["Acc"].numpy(), ref["Acc"], rtol=1e-12)
    assert float(got["aAcc"]) == pytest.approx(ref["aAcc"], rel=1e-12)
    assert float(got["mAcc"]) == pytest.approx(np.nanmean(ref["Acc"]), rel=1e-12)
    # NaN only for the class absent from both; mIoU is the mean over the other six.
    assert torch.isnan(got["IoU"]).tolist() == [False] * 6 + [True]
    assert float(got["IoU"][4]) == 0.0 and float(got["IoU"][5]) == 0.0
    assert math.isnan(float(got["Acc"][5])) and not math.isnan(float(got["Acc"][4]))
    assert float(got["mIoU"]) == pytest.approx(np.nanmean(ref["IoU"]), rel=1e-12)
    assert float(got["mIoU"]) == pytest.approx(ref["IoU"][:6].mean(), rel=1e-12)


def test_accumulates_dataset_level_not_mean_of_images():
    batches = [_random_batch(seed, batch=1) for seed in range(4)]
    streamed = SegmentationMetrics(num_classes=C)
    for preds, target in batches:
        streamed.update(preds, target)
    whole = SegmentationMetrics(num_classes=C)
    whole.update(torch.cat([p for p, _ in batches]), torch.cat([t for _, t in batches]))
    assert torch.equal(streamed.confusion_matrix, whole.confusion_matrix)
    for key, value in whole.compute().items():
        torch.testing.assert_close(streamed.compute()[key], value, equal_nan=True)

    per_image = []
    for preds, target in batches:
        single = SegmentationMetrics(num_classes=C)
        single.update(preds, target)
        per_image.append(float(single.compute()["mIoU"]))
    assert float(whole.compute()["mIoU"]) != pytest.approx(np.mean(per_image), abs=1e-6)


def test_logits_and_labels_agree():
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(2, C, 6, 5, generator=gen)
    target = torch.randint(0, C, (2, 6, 5), generator=gen)
    target[0, 0] = 255
    from_logits = SegmentationMetrics(num_classes=C)
    from_logits.update(logits, target)
    from_labels = SegmentationMetrics(num_classes=C)
    from_labels.update(logits.argmax(1), target)
    assert torch.equal(from_logits.confusion_matrix, from_labels.confusion_matrix)
    assert from_logits.confusion_matrix.sum() == target.numel() - 5


def test_bf16_logits_and_uint8_targets():
    logits = torch.randn(1, 3, 4, 4).to(torch.bfloat16)
    target = torch.randint(0, 3, (1, 4, 4), dtype=torch.uint8)
    target[0, 0, 0] = 255
    metric = SegmentationMetrics(num_classes=3)
    metric.update(logits, target)
    assert int(metric.confusion_matrix.sum()) == 15


def test_group_means_hand_computed():
    # IoU per class: 0 -> 50, 1 -> 100, 2 -> 0 (predicted, not in ground truth), 3 -> NaN
    target = torch.tensor([[[0, 0, 1, 255]]])
    preds = torch.tensor([[[0, 2, 1, 3]]])
    groups = {"head": [0, 1], "body": [2], "tail": [3], "rare": [1, 3]}
    metric = SegmentationMetrics(num_classes=4, groups=groups)
    metric.update(preds, target)
    got = metric.compute()
    torch.testing.assert_close(
        got["IoU"], torch.tensor([50.0, 100.0, 0.0, math.nan], dtype=torch.float64), equal_nan=True
    )
    assert float(got["mIoU"]) == pytest.approx(50.0)
    assert float(got["head_mIoU"]) == pytest.approx(75.0)
    assert float(got["body_mIoU"]) == 0.0
    assert math.isnan(float(got["tail_mIoU"]))
    assert float(got["rare_mIoU"]) == pytest.approx(100.0)
    assert float(got["aAcc"]) == pytest.approx(200 / 3)


def test_all_pixels_ignored_gives_nan_without_error():
    metric = SegmentationMetrics(num_classes=3, groups={"head": [0]})
    metric.update(torch.randn(2, 3, 4, 4), torch.full((2, 4, 4), 255))
    got = metric.compute()
    assert int(metric.confusion_matrix.sum()) == 0
    for key in ("mIoU", "aAcc", "mAcc", "head_mIoU"):
        assert math.isnan(float(got[key])), key


def test_reset_and_forward():
    preds, target = _random_batch(0)
    metric = SegmentationMetrics(num_classes=C)
    batch_value = metric(preds[:1], target[:1])  # forward: this batch only, also accumulated
    metric.update(preds[1:], target[1:])
    assert int(metric.confusion_matrix.sum()) == int((target != 255).sum())
    single = SegmentationMetrics(num_classes=C)
    single.update(preds[:1], target[:1])
    torch.testing.assert_close(batch_value["mIoU"], single.compute()["mIoU"])
    metric.reset()
    assert int(metric.confusion_matrix.sum()) == 0


def test_ignore_index_none_and_validate_off():
    preds, target = _random_batch(4)
    target[target == 255] = 0
    strict = SegmentationMetrics(num_classes=C, ignore_index=None)
    strict.update(preds, target)
    fast = SegmentationMetrics(num_classes=C, ignore_index=None, validate=False)
    fast.update(preds, target)
    assert torch.equal(strict.confusion_matrix, fast.confusion_matrix)
    assert int(strict.confusion_matrix.sum()) == target.numel()
    with pytest.raises(ValueError, match=r"target: .*\[255\]"):
        strict.update(preds, torch.full_like(target, 255))


def test_per_class_table():
    target = torch.tensor([[[0, 0, 1, 255]]])
    preds = torch.tensor([[[0, 2, 1, 0]]])
    metric = SegmentationMetrics(num_classes=3, groups={"head": [0], "tail": [1, 2]})
    metric.update(preds, target)
    rows = metric.per_class_table(["road", "car", "bike"])
    assert [row["class"] for row in rows] == ["road", "car", "bike"]
    assert rows[0] == {
        "index": 0, "class": "road", "group": "head", "IoU": 50.0, "Acc": 50.0,
        "pixels": 2, "predicted": 1,
    }  # fmt: skip
    assert rows[2]["group"] == "tail" and rows[2]["IoU"] == 0.0 and math.isnan(rows[2]["Acc"])
    assert metric.per_class_table()[1]["class"] == "1"
    with pytest.raises(ValueError, match=r"class_names: expected 3 names.*received 2"):
        metric.per_class_table(["a", "b"])


TARGET = torch.zeros(2, 4, 4, dtype=torch.long)


@pytest.mark.parametrize(
    ("preds", "target", "match"),
    [
        (torch.zeros(2, 4, 5, dtype=torch.long), TARGET, r"preds: expected labels of shape \(2, 4, 4\).*\(2, 4, 5\)"),
        (torch.zeros(2, 4, 4, 4), TARGET, r"preds: expected logits of shape \(2, 3, 4, 4\).*\(2, 4, 4, 4\)"),
        (torch.zeros(2, 3, 4, 5), TARGET, r"preds: expected logits of shape \(2, 3, 4, 4\)"),
        (torch.zeros(2, 4, 4), TARGET, r"preds: expected integer labels.*float32"),
        (torch.zeros(2, 3, 4, 4, dtype=torch.long), TARGET, r"preds: expected floating-point logits"),
        (torch.zeros(2, 4, 4, dtype=torch.long), TARGET.float(), r"target: expected an integer tensor.*float32"),
        (torch.zeros(8, dtype=torch.long), TARGET.reshape(-1), r"target: expected integer labels of shape \(B, H, W\), received \(32,\)"),
        (torch.zeros(2, 4, 4, dtype=torch.long), TARGET + 3, r"target: expected class labels in \[0, 3\).*\[3\]"),
        (torch.full((2, 4, 4), -2), TARGET, r"preds: expected class labels in \[0, 3\).*\[-2\]"),
        (torch.full((2, 3, 4, 4), math.nan), TARGET, r"preds: expected finite logits"),
        ([[0]], TARGET, r"preds: expected a torch.Tensor, received list"),
    ],
)  # fmt: skip
def test_update_rejects_bad_input(preds, target, match):
    metric = SegmentationMetrics(num_classes=3)
    with pytest.raises(ValueError, match=match):
        metric.update(preds, target)
    assert int(metric.confusion_matrix.sum()) == 0


def test_out_of_range_pred_on_ignored_pixel_is_fine():
    target = torch.tensor([[[0, 255]]])
    metric = SegmentationMetrics(num_classes=2)
    metric.update(torch.tensor([[[0, 255]]]), target)
    assert int(metric.confusion_matrix.sum()) == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_classes": 1}, r"num_classes: expected an int >= 2, received 1"),
        ({"num_classes": 5, "ignore_index": 0}, r"ignore_index: expected a value outside"),
        ({"num_classes": 5, "groups": {"tail": [5]}}, r"groups\['tail'\].*\[0, 5\).*\[5\]"),
    ],
)
def test_constructor_rejects_bad_args(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SegmentationMetrics(**kwargs)
