"""``ModelOutput``: what ``forward_train`` returns to the training loop."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor

__all__ = ["ModelOutput"]


class ModelOutput(NamedTuple):
    """Features and logits of one forward pass (the backbone runs once).

    Attributes:
        features: the features right before dropout / classifier, the input of a regularizer:
            ``(B, D, h, w)`` at output stride for segmentation, ``(B, D)`` for classification.
        logits: ``(B, C, H, W)`` upsampled to the input size for segmentation, ``(B, C)`` else.
        aux_logits: logits of the auxiliary head, upsampled like ``logits``, or ``None`` when
            the model has no auxiliary head. Weigh their loss by ``model.aux_loss_weight``.
    """

    features: Tensor
    logits: Tensor
    aux_logits: Tensor | None = None
