"""Pure, stateless maths shared by the regularizers, losses and metrics."""

from semantic_anchors.functional.anchor_ce import anchor_gate, reweighted_anchor_ce
from semantic_anchors.functional.confusion import (
    accuracy_from_confusion,
    confusion_matrix,
    group_means,
    iou_from_confusion,
    overall_accuracy_from_confusion,
)
from semantic_anchors.functional.p2a import pixel_to_anchor_loss, resize_labels

__all__ = [
    "accuracy_from_confusion",
    "anchor_gate",
    "confusion_matrix",
    "group_means",
    "iou_from_confusion",
    "overall_accuracy_from_confusion",
    "pixel_to_anchor_loss",
    "resize_labels",
    "reweighted_anchor_ce",
]
