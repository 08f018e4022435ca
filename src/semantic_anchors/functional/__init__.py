"""Pure, stateless maths shared by the regularizers, losses and metrics."""

from semantic_anchors.functional.anchor_ce import anchor_gate, reweighted_anchor_ce
from semantic_anchors.functional.p2a import pixel_to_anchor_loss, resize_labels

__all__ = ["anchor_gate", "pixel_to_anchor_loss", "resize_labels", "reweighted_anchor_ce"]
