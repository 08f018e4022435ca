"""Dataset-level semantic-segmentation metrics from one accumulated confusion matrix.

All rates are **percentages in [0, 100]**. mIoU is computed from the confusion matrix of the
whole dataset (as mmsegmentation and torchmetrics ``MulticlassJaccardIndex``), never as a mean of
per-image IoUs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from semantic_anchors.functional.confusion import (
    accuracy_from_confusion,
    group_means,
    iou_from_confusion,
    overall_accuracy_from_confusion,
)
from semantic_anchors.metrics._base import _ConfusionMatrixMetric

__all__ = ["SegmentationMetrics"]


def _segmentation_compute(
    confmat: Tensor, groups: Mapping[str, Sequence[int]]
) -> dict[str, Tensor]:
    iou = iou_from_confusion(confmat)  # (C,)
    acc = accuracy_from_confusion(confmat)  # (C,)
    out = {
        "IoU": iou,
        "mIoU": torch.nanmean(iou),
        "aAcc": overall_accuracy_from_confusion(confmat),
        "Acc": acc,
        "mAcc": torch.nanmean(acc),
    }
    for name, value in group_means(iou, groups).items():
        out[f"{name}_mIoU"] = value
    return out


class SegmentationMetrics(_ConfusionMatrixMetric):
    """mIoU, pixel accuracy and per-class / per-group IoU, accumulated over a dataset.

    One ``(C, C)`` int64 confusion-matrix state (rows = ground truth, columns = prediction) with
    ``dist_reduce_fx="sum"``, so under DDP ``compute()`` sums the counts of all processes.

    ``compute()`` returns a dict; every rate is a **percentage in [0, 100]**:

    * ``IoU`` ``(C,)``: per-class IoU, NaN for a class absent from both ground truth and
      prediction. A class that is predicted but absent from the ground truth has IoU 0.
    * ``mIoU``: mean of ``IoU`` over its non-NaN entries.
    * ``aAcc``: overall pixel accuracy over the non-ignored pixels.
    * ``Acc`` ``(C,)``: per-class accuracy (recall), NaN for a class absent from the ground truth.
    * ``mAcc``: mean of ``Acc`` over its non-NaN entries.
    * ``{name}_mIoU`` for each group when ``groups`` is given, e.g. ``head_mIoU``, ``body_mIoU``,
      ``tail_mIoU``: mean of the group's non-NaN ``IoU`` entries (NaN if none).

    Values are float64 tensors (float32 on MPS); NaN everywhere before any valid pixel was seen.

    Args:
        num_classes: number of classes ``C`` (>= 2).
        ignore_index: target value whose pixels are left out (outside ``[0, C)``), or None.
        groups: optional ``{name: class indices}``, e.g. ``{"head": [...], "body": [...],
            "tail": [...]}`` as stored with the dataset.
        validate: check label ranges and logits finiteness in ``update`` (forces a device
            sync); shapes and dtypes are always checked.
        **kwargs: forwarded to :class:`torchmetrics.Metric` (e.g. ``sync_on_compute``).

    Shape:
        - preds: logits ``(B, C, H, W)`` (arg-maxed over dim 1) or labels ``(B, H, W)``.
        - target: integer labels ``(B, H, W)``; ``ignore_index`` pixels are left out.

    Raises:
        ValueError: ``num_classes`` < 2, ``ignore_index`` inside ``[0, C)``, ``groups`` not a
            mapping or with indices out of range; in ``update``: shape or dtype mismatch, float
            targets, labels out of range, non-finite logits (the last two with ``validate``).

    Example:
        >>> metric = SegmentationMetrics(num_classes=3, groups={"head": [0], "tail": [1, 2]})
        >>> target = torch.tensor([[[0, 0], [1, 255]]])
        >>> metric.update(torch.tensor([[[0, 1], [1, 2]]]), target)
        >>> result = metric.compute()
        >>> result["IoU"], result["mIoU"], result["tail_mIoU"]
        (tensor([50., 50., nan], dtype=torch.float64), tensor(50., dtype=torch.float64), \
tensor(50., dtype=torch.float64))
        >>> round(float(result["aAcc"]), 2)
        66.67
    """

    def __init__(
        self,
        num_classes: int,
        ignore_index: int | None = 255,
        groups: Mapping[str, Sequence[int] | Tensor] | None = None,
        validate: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_classes, ignore_index, groups, validate, **kwargs)

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Add a batch to the confusion matrix.

        Args:
            preds: logits ``(B, C, H, W)`` or integer labels ``(B, H, W)``.
            target: integer labels ``(B, H, W)``.

        Raises:
            ValueError: shape or dtype mismatch, float targets, labels out of range or
                non-finite logits (the last two with ``validate=True``).
        """
        self._update_confmat(preds, target, 3, "(B, H, W)")

    def compute(self) -> dict[str, Tensor]:
        """The metrics of everything seen since the last ``reset()`` (percentages, see class)."""
        return _segmentation_compute(self.confmat, self.groups)

    def per_class_table(self, class_names: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """One row per class: index, name, group(s), IoU (%), Acc (%), ground-truth and predicted pixels.

        Uses the counts of all processes, so under DDP call it on every rank (like ``compute``).

        Raises:
            ValueError: ``class_names`` does not have ``num_classes`` entries.

        Example:
            >>> metric = SegmentationMetrics(num_classes=2)
            >>> metric.update(torch.tensor([[[0, 1]]]), torch.tensor([[[0, 0]]]))
            >>> metric.per_class_table(["road", "car"])[1]
            {'index': 1, 'class': 'car', 'group': '', 'IoU': 0.0, 'Acc': nan, 'pixels': 0, \
'predicted': 1}
        """
        names, groups = self._table_names_groups(class_names)
        confmat = self._synced_confmat()  # (C, C)
        result = _segmentation_compute(confmat, self.groups)
        return [
            {
                "index": c,
                "class": names[c],
                "group": groups[c],
                "IoU": float(result["IoU"][c]),
                "Acc": float(result["Acc"][c]),
                "pixels": int(confmat[c].sum()),
                "predicted": int(confmat[:, c].sum()),
            }
            for c in range(self.num_classes)
        ]
