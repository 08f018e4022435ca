"""Feature regularizers sharing one contract: ``loss = reg(features, labels, classifier)``."""

from semantic_anchors.regularizers.base import Regularizer
from semantic_anchors.regularizers.car import ClassAwareRegularizer
from semantic_anchors.regularizers.center import CenterLossRegularizer
from semantic_anchors.regularizers.etf_classifier import ETFDotRegressionRegularizer
from semantic_anchors.regularizers.fixed_anchor import FixedAnchorRegularizer
from semantic_anchors.regularizers.prototype import PrototypeRegularizer
from semantic_anchors.regularizers.sar import SemanticAnchorRegularizer

__all__ = [
    "CenterLossRegularizer",
    "ClassAwareRegularizer",
    "ETFDotRegressionRegularizer",
    "FixedAnchorRegularizer",
    "PrototypeRegularizer",
    "Regularizer",
    "SemanticAnchorRegularizer",
]
