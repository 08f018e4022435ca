"""Build a regularizer from a name and keyword options (the training config's ``regularizer``)."""

from __future__ import annotations

from typing import Any

from semantic_anchors._registry import Registry
from semantic_anchors.regularizers.base import Regularizer
from semantic_anchors.regularizers.car import ClassAwareRegularizer
from semantic_anchors.regularizers.center import CenterLossRegularizer
from semantic_anchors.regularizers.etf_classifier import ETFDotRegressionRegularizer
from semantic_anchors.regularizers.fixed_anchor import FixedAnchorRegularizer
from semantic_anchors.regularizers.protoseg import ProtoSegLoss
from semantic_anchors.regularizers.prototype import PrototypeRegularizer
from semantic_anchors.regularizers.sar import SemanticAnchorRegularizer

__all__ = ["REGULARIZERS", "build_regularizer"]

REGULARIZERS: Registry[type[Regularizer]] = Registry(
    "regularizer", supplied=("num_classes", "feat_dim", "dense")
)
REGULARIZERS.add("none", None, description="No regularizer: the plain task loss (the CE baseline).")
REGULARIZERS.add("sar", SemanticAnchorRegularizer)
REGULARIZERS.add("cr", FixedAnchorRegularizer)
REGULARIZERS.add("car", ClassAwareRegularizer)
REGULARIZERS.add("prototype", PrototypeRegularizer)
REGULARIZERS.add("center", CenterLossRegularizer)
REGULARIZERS.add("etf-dr", ETFDotRegressionRegularizer)
REGULARIZERS.add("protoseg", ProtoSegLoss)


def build_regularizer(
    name: str, num_classes: int, feat_dim: int, *, dense: bool, **options: Any
) -> Regularizer | None:
    """``build_regularizer("sar", 19, 512, dense=True, lambda_p2a=0.05)``; ``"none"`` gives None.

    Raises:
        ValueError: unknown name (lists the valid ones) or an option the regularizer does not take
            (lists the ones it does).
    """
    REGULARIZERS.check_options(name, options)
    cls = REGULARIZERS[name]
    if cls is None:
        return None
    return cls(num_classes, feat_dim, dense=dense, **options)
