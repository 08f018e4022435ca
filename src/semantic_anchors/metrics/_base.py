"""The confusion-matrix state and helpers shared by the segmentation and classification metrics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from semantic_anchors.functional.confusion import (
    _confusion_matrix_arg_validation,
    _confusion_matrix_format,
    _confusion_matrix_tensor_validation,
    _confusion_matrix_update,
    validate_groups,
)


class _ConfusionMatrixMetric(Metric):
    """A ``(C, C)`` int64 confusion matrix summed over batches and, under DDP, over processes."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    confmat: Tensor

    def __init__(
        self,
        num_classes: int,
        ignore_index: int | None,
        groups: Mapping[str, Sequence[int] | Tensor] | None,
        validate: bool,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _confusion_matrix_arg_validation(num_classes, ignore_index)
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.groups = validate_groups(groups, num_classes)
        self.validate = validate
        self.add_state(
            "confmat",
            default=torch.zeros(num_classes, num_classes, dtype=torch.long),
            dist_reduce_fx="sum",
        )

    def _update_confmat(
        self, preds: Tensor, target: Tensor, target_ndim: int, target_shape: str
    ) -> None:
        if not isinstance(target, Tensor) or target.ndim != target_ndim:
            received = tuple(target.shape) if isinstance(target, Tensor) else type(target).__name__
            raise ValueError(
                f"target: expected integer labels of shape {target_shape}, received {received}"
            )
        _confusion_matrix_tensor_validation(
            preds, target, self.num_classes, self.ignore_index, self.validate
        )
        preds, target = _confusion_matrix_format(preds, target)  # (N,), (N,)
        self.confmat += _confusion_matrix_update(preds, target, self.num_classes, self.ignore_index)

    @property
    def confusion_matrix(self) -> Tensor:
        """A copy of this process's ``(C, C)`` int64 counts (rows = ground truth, cols = prediction).

        Under DDP read it inside ``with metric.sync_context():`` (on every rank) to get the
        counts of all processes.
        """
        return self.confmat.clone()

    def _synced_confmat(self) -> Tensor:
        """The confusion matrix of all processes (a collective call under DDP, like compute)."""
        with self.sync_context(
            dist_sync_fn=self.dist_sync_fn,
            should_sync=self._to_sync and not self._is_synced,
            should_unsync=self._should_unsync,
        ):
            return self.confmat.clone()

    def _table_names_groups(self, class_names: Sequence[str] | None) -> tuple[list[str], list[str]]:
        if class_names is None:
            names = [str(c) for c in range(self.num_classes)]
        else:
            names = [str(name) for name in class_names]
            if len(names) != self.num_classes:
                raise ValueError(
                    f"class_names: expected {self.num_classes} names (num_classes), "
                    f"received {len(names)}"
                )
        groups = [
            ",".join(name for name, indices in self.groups.items() if c in indices)
            for c in range(self.num_classes)
        ]
        return names, groups
