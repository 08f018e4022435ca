"""Evaluation metrics (torchmetrics-based, DDP sync free), COCO detection AP and representation
diagnostics.

Rates (IoU, accuracy) are percentages in [0, 100]; NaN marks a class with nothing to measure and
is left out of every mean. See ``docs/metrics.md``.
"""

from semantic_anchors.metrics.classification import ClassificationMetrics
from semantic_anchors.metrics.detection import DetectionMetrics
from semantic_anchors.metrics.representation import (
    FeatureStatistics,
    class_centers,
    cosine_similarity_matrix,
    inter_class_separability,
    intra_class_compactness,
    pairwise_center_distances,
    relationship_consistency,
)
from semantic_anchors.metrics.segmentation import SegmentationMetrics

__all__ = [
    "ClassificationMetrics",
    "DetectionMetrics",
    "FeatureStatistics",
    "SegmentationMetrics",
    "class_centers",
    "cosine_similarity_matrix",
    "inter_class_separability",
    "intra_class_compactness",
    "pairwise_center_distances",
    "relationship_consistency",
]
