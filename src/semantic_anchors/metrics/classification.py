"""Dataset-level classification metrics (top-1 / top-k, per-class and per-group accuracy).

All rates are **percentages in [0, 100]**; built on the same confusion-matrix maths as the
segmentation metrics, so long-tail head / body / tail accuracy means the same thing in both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from semantic_anchors.functional.confusion import (
    accuracy_from_confusion,
    group_means,
    overall_accuracy_from_confusion,
)
from semantic_anchors.metrics._base import _ConfusionMatrixMetric

__all__ = ["ClassificationMetrics"]


def _classification_compute(
    confmat: Tensor,
    groups: Mapping[str, Sequence[int]],
    top_k: int | None = None,
    topk_correct: Tensor | None = None,
    topk_total: Tensor | None = None,
) -> dict[str, Tensor]:
    acc = accuracy_from_confusion(confmat)  # (C,)
    out = {"top1": overall_accuracy_from_confusion(confmat)}
    if top_k is not None and topk_correct is not None and topk_total is not None:
        # NaN unless every sample came with scores: top-k of label inputs is unknowable.
        complete = bool(topk_total == confmat.sum()) and bool(topk_total > 0)
        value = 100.0 * topk_correct.to(acc.dtype) / topk_total.to(acc.dtype)
        out[f"top{top_k}"] = value if complete else torch.full_like(value, float("nan"))
    out["Acc"] = acc
    out["mAcc"] = torch.nanmean(acc)
    for name, value in group_means(acc, groups).items():
        out[f"{name}_Acc"] = value
    return out


class ClassificationMetrics(_ConfusionMatrixMetric):
    """Top-1 / top-k accuracy, per-class accuracy and group (head / body / tail) accuracy.

    A ``(C, C)`` int64 confusion-matrix state plus top-k correct / total counts, all with
    ``dist_reduce_fx="sum"`` (DDP sync free). ``compute()`` returns a dict; every rate is a
    **percentage in [0, 100]**:

    * ``top1``: overall accuracy.
    * ``top{k}`` (``top5`` by default) when ``num_classes >= top_k``: share of samples whose label
      is among the ``k`` highest scores; NaN if any batch was given as labels instead of scores.
    * ``Acc`` ``(C,)``: per-class accuracy (recall), NaN for a class absent from the targets.
    * ``mAcc``: mean of ``Acc`` over its non-NaN entries (balanced accuracy).
    * ``{name}_Acc`` per group, e.g. ``head_Acc``, ``body_Acc``, ``tail_Acc``: mean of the
      group's non-NaN per-class accuracies (NaN if none).

    Args:
        num_classes: number of classes ``C`` (>= 2).
        groups: optional ``{name: class indices}``, e.g. ``{"head": [...], "body": [...],
            "tail": [...]}``.
        top_k: the ``k`` of the extra top-k accuracy, or None for none; skipped when
            ``num_classes < top_k``.
        validate: check label ranges and finiteness in ``update`` (forces a device sync).
        **kwargs: forwarded to :class:`torchmetrics.Metric`.

    Shape:
        - preds: logits / scores ``(B, C)`` or integer labels ``(B,)``.
        - target: integer labels ``(B,)``.

    Raises:
        ValueError: ``num_classes`` < 2, bad ``top_k``, ``groups`` not a mapping or with indices
            out of range; in ``update``: shape or dtype mismatch, float targets, labels out of
            range, non-finite scores (the last two with ``validate``).

    Example:
        >>> metric = ClassificationMetrics(num_classes=3, groups={"head": [0], "tail": [1, 2]})
        >>> metric.update(torch.tensor([0, 0, 1, 2]), torch.tensor([0, 1, 1, 1]))
        >>> result = metric.compute()
        >>> result["top1"], result["Acc"], result["tail_Acc"]
        (tensor(50., dtype=torch.float64), tensor([100.0000,  33.3333,      nan], \
dtype=torch.float64), tensor(33.3333, dtype=torch.float64))
    """

    topk_correct: Tensor
    topk_total: Tensor

    def __init__(
        self,
        num_classes: int,
        groups: Mapping[str, Sequence[int] | Tensor] | None = None,
        top_k: int | None = 5,
        validate: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_classes, None, groups, validate, **kwargs)
        if top_k is not None and (
            isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 2
        ):
            raise ValueError(f"top_k: expected an int >= 2 or None, received {top_k!r}")
        self.top_k = top_k if top_k is not None and num_classes >= top_k else None
        self.add_state("topk_correct", default=torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("topk_total", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Add a batch.

        Args:
            preds: scores ``(B, C)`` or integer labels ``(B,)``.
            target: integer labels ``(B,)``.

        Raises:
            ValueError: shape or dtype mismatch, float targets, labels out of range or
                non-finite scores (the last two with ``validate=True``).
        """
        self._update_confmat(preds, target, 1, "(B,)")
        if self.top_k is not None and preds.ndim == 2:
            top = preds.topk(self.top_k, dim=1).indices  # (B, k)
            hit = (top == target[:, None]).any(dim=1)  # (B,)
            self.topk_correct += hit.sum()
            self.topk_total += target.shape[0]

    def compute(self) -> dict[str, Tensor]:
        """The metrics of everything seen since the last ``reset()`` (percentages, see class)."""
        return _classification_compute(
            self.confmat, self.groups, self.top_k, self.topk_correct, self.topk_total
        )

    def per_class_table(self, class_names: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """One row per class: index, name, group(s), Acc (%), target and predicted counts.

        Uses the counts of all processes, so under DDP call it on every rank (like ``compute``).

        Raises:
            ValueError: ``class_names`` does not have ``num_classes`` entries.

        Example:
            >>> metric = ClassificationMetrics(num_classes=2)
            >>> metric.update(torch.tensor([0, 1, 1]), torch.tensor([0, 0, 1]))
            >>> metric.per_class_table(["cat", "dog"])[0]
            {'index': 0, 'class': 'cat', 'group': '', 'Acc': 50.0, 'samples': 2, 'predicted': 1}
        """
        names, groups = self._table_names_groups(class_names)
        confmat = self._synced_confmat()  # (C, C)
        acc = accuracy_from_confusion(confmat)  # (C,)
        return [
            {
                "index": c,
                "class": names[c],
                "group": groups[c],
                "Acc": float(acc[c]),
                "samples": int(confmat[c].sum()),
                "predicted": int(confmat[:, c].sum()),
            }
            for c in range(self.num_classes)
        ]
