"""Classification losses for (long-tailed) training, under one builder."""

from semantic_anchors.losses.balanced_softmax import BalancedSoftmaxLoss
from semantic_anchors.losses.focal import FocalLoss
from semantic_anchors.losses.ldam import LDAMLoss
from semantic_anchors.losses.logit_adjustment import LogitAdjustedLoss, posthoc_adjust
from semantic_anchors.losses.registry import LOSSES, build_loss

__all__ = [
    "LOSSES",
    "BalancedSoftmaxLoss",
    "FocalLoss",
    "LDAMLoss",
    "LogitAdjustedLoss",
    "build_loss",
    "posthoc_adjust",
]
