"""Class-anchor Regularization ("CR", paper Sec. 3.2 / Table 7): MSE to fixed anchors."""

from __future__ import annotations

from collections.abc import Callable

import torch

from semantic_anchors._validation import check_non_negative
from semantic_anchors.anchors import make_anchors
from semantic_anchors.functional.p2a import pixel_to_anchor_loss
from semantic_anchors.regularizers.base import Regularizer

__all__ = ["FixedAnchorRegularizer"]


class FixedAnchorRegularizer(Regularizer):
    """Pull features straight to pre-defined anchors, with no embedding and no classifier.

    The comparison point the paper calls CR: ``lambda_p2a * L_p2a(F, Y . A)`` with ``A`` drawn
    from ``"normal"`` (ND), ``"orthogonal"`` (OM) or ``"etf"`` (MES) and kept fixed.

    Args:
        num_classes: number of classes ``C``.
        feat_dim: feature dimension ``D``.
        dense: dense ``(B, D, h, w)`` or vector ``(B, D)`` features.
        anchors: anchor source or a ``(C, D)`` tensor (see :func:`semantic_anchors.make_anchors`).
        lambda_p2a: loss weight (default 0.1, as SAR's pixel-to-anchor term).
        ignore_index: label value to ignore.
        validate: the checks that sync the device: ``True`` every call, ``False`` never, an
            int ``N`` the first ``N`` calls (see :class:`Regularizer`).
        generator: optional ``torch.Generator`` for the anchors.

    Shape:
        - features: ``(B, D, h, w)`` or ``(B, D)``; labels ``(B, H, W)`` or ``(B,)``.
        - Output: ``()``.

    Raises:
        ValueError: bad anchors or lambda, and every input check of :class:`Regularizer`.

    Example:
        >>> cr = FixedAnchorRegularizer(num_classes=3, feat_dim=8, anchors="etf")
        >>> cr(torch.randn(2, 8, 4, 4), torch.randint(0, 3, (2, 16, 16))).shape
        torch.Size([])
    """

    def __init__(
        self,
        num_classes: int,
        feat_dim: int,
        *,
        dense: bool = True,
        anchors: str | torch.Tensor = "normal",
        lambda_p2a: float = 0.1,
        ignore_index: int | None = 255,
        validate: bool | int = True,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(
            num_classes, feat_dim, dense=dense, ignore_index=ignore_index, validate=validate
        )
        self.lambda_p2a = check_non_negative("lambda_p2a", lambda_p2a)
        c, d = self.num_classes, self.feat_dim
        if isinstance(anchors, str) and anchors == "text":
            raise ValueError(
                "fixed anchors are targets in feature space, (C, D); text anchors are (C, T) "
                "sentence embeddings that need SAR's embedding h_psi: use regularizer 'sar'"
            )
        self.register_buffer("anchors", make_anchors(anchors, c, d, generator=generator))

    def compute(
        self,
        features: torch.Tensor,
        labels: torch.Tensor,
        valid: torch.Tensor,
        classifier: Callable[[torch.Tensor], torch.Tensor] | None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Weighted pixel-to-anchor MSE towards the fixed anchors."""
        loss = self.lambda_p2a * pixel_to_anchor_loss(features, labels, self.anchors, valid)
        return loss, {"loss_p2a": loss.detach()}
