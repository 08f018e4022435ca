"""semantic-anchors: Semantic Anchor Regularization (SAR) for PyTorch.

Three lines in any training loop::

    sar = SemanticAnchorRegularizer(num_classes=19, feat_dim=512)
    loss = F.cross_entropy(logits, labels, ignore_index=255) + sar(features, labels, classifier)
"""

from semantic_anchors.anchors import make_anchors
from semantic_anchors.hooks import FeatureCapture, find_classifier
from semantic_anchors.regularizers import (
    CenterLossRegularizer,
    ClassAwareRegularizer,
    ETFDotRegressionRegularizer,
    FixedAnchorRegularizer,
    PrototypeRegularizer,
    Regularizer,
    SemanticAnchorRegularizer,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "CenterLossRegularizer",
    "ClassAwareRegularizer",
    "ETFDotRegressionRegularizer",
    "FeatureCapture",
    "FixedAnchorRegularizer",
    "PrototypeRegularizer",
    "Regularizer",
    "SemanticAnchorRegularizer",
    "__version__",
    "find_classifier",
    "make_anchors",
]
