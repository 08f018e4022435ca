"""Build a regularizer from a name and keyword options (the training config's ``regularizer``)."""

from __future__ import annotations

import difflib
import inspect
from typing import Any

from semantic_anchors.regularizers.base import Regularizer
from semantic_anchors.regularizers.car import ClassAwareRegularizer
from semantic_anchors.regularizers.center import CenterLossRegularizer
from semantic_anchors.regularizers.etf_classifier import ETFDotRegressionRegularizer
from semantic_anchors.regularizers.fixed_anchor import FixedAnchorRegularizer
from semantic_anchors.regularizers.prototype import PrototypeRegularizer
from semantic_anchors.regularizers.sar import SemanticAnchorRegularizer

__all__ = ["REGULARIZERS", "build_regularizer"]

REGULARIZERS: dict[str, type[Regularizer] | None] = {
    "none": None,
    "sar": SemanticAnchorRegularizer,
    "cr": FixedAnchorRegularizer,
    "car": ClassAwareRegularizer,
    "prototype": PrototypeRegularizer,
    "center": CenterLossRegularizer,
    "etf-dr": ETFDotRegressionRegularizer,
}


def build_regularizer(
    name: str, num_classes: int, feat_dim: int, *, dense: bool, **options: Any
) -> Regularizer | None:
    """``build_regularizer("sar", 19, 512, dense=True, lambda_p2a=0.05)``; ``"none"`` gives None.

    Raises:
        ValueError: unknown name (lists the valid ones) or an option the regularizer does not take
            (lists the ones it does).
    """
    key = str(name).lower().replace("_", "-")
    if key not in REGULARIZERS:
        close = difflib.get_close_matches(key, list(REGULARIZERS), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(f"unknown regularizer {name!r}{hint}; valid: {sorted(REGULARIZERS)}")
    cls = REGULARIZERS[key]
    if cls is None:
        if options:
            raise ValueError(f"regularizer 'none' takes no options, got {sorted(options)}")
        return None
    accepted = [
        p for p in inspect.signature(cls.__init__).parameters
        if p not in ("self", "num_classes", "feat_dim", "dense")
    ]  # fmt: skip
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(
            f"regularizer {key!r} does not take option(s) {unknown}; valid options: {accepted}"
        )
    return cls(num_classes, feat_dim, dense=dense, **options)
