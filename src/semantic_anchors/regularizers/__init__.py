"""Feature regularizers sharing one contract: ``loss = reg(features, labels, classifier)``."""

from semantic_anchors.regularizers.base import Regularizer
from semantic_anchors.regularizers.fixed_anchor import FixedAnchorRegularizer
from semantic_anchors.regularizers.sar import SemanticAnchorRegularizer

__all__ = ["FixedAnchorRegularizer", "Regularizer", "SemanticAnchorRegularizer"]
