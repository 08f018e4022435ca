"""Balanced softmax (Ren et al., NeurIPS 2020): cross-entropy on ``logits + log prior``."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from semantic_anchors.losses.logit_adjustment import LogitAdjustedLoss

__all__ = ["BalancedSoftmaxLoss"]


class BalancedSoftmaxLoss(LogitAdjustedLoss):
    """Balanced softmax cross-entropy: ``-log softmax(logits + log pi)_y``.

    Ren et al. shift every logit by the log of its class's training count ``n_j``; the constant
    ``log sum_j n_j`` cancels in the softmax, so this is the logit-adjusted loss with ``tau = 1``
    (``log pi`` computed as ``log(pi + 1e-12)``, so a class never seen in training stays finite).
    Uniform frequencies give plain cross-entropy. Predict with the raw logits.

    Args:
        num_classes: number of classes ``C``.
        class_frequencies: ``(C,)`` training counts (images / pixels) or frequencies.
        ignore_index: target value ignored by the loss (``None``: none).

    Shape:
        - logits: ``(B, C)`` or ``(B, C, H, W)``; targets ``(B,)`` or ``(B, H, W)``.
        - Output: ``()``, the mean over non-ignored targets (``0`` if there are none).

    Raises:
        ValueError: negative / non-finite / all-zero frequencies or the wrong number of them;
            per call, logits / targets of the wrong shape.

    Example:
        >>> loss = BalancedSoftmaxLoss(3, [100, 10, 1])
        >>> loss(torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))).shape
        torch.Size([])
    """

    def __init__(
        self,
        num_classes: int,
        class_frequencies: Sequence[float] | torch.Tensor,
        *,
        ignore_index: int | None = 255,
    ) -> None:
        super().__init__(num_classes, class_frequencies, tau=1.0, ignore_index=ignore_index)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, ignore_index={self.ignore_index}"
