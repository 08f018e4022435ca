"""Fixed simplex-ETF classifier with the dot-regression loss (Yang et al., NeurIPS 2022)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from semantic_anchors._validation import check_non_negative
from semantic_anchors.anchors import make_anchors
from semantic_anchors.regularizers.base import Regularizer

__all__ = ["ETFDotRegressionRegularizer"]

_EPS = 1e-8  # the authors' clamp on the feature norm


class ETFDotRegressionRegularizer(Regularizer):
    """Regress each normalised feature onto its class vertex of a fixed simplex ETF.

    ``W`` (``weight``, ``(C, D)``) is a simplex equiangular tight frame from
    ``make_anchors("etf", C, D)``: unit rows with pairwise cosine ``-1/(C-1)``, fixed. With
    ``h_hat = h / max(|h|, 1e-8)`` the loss is the dot-regression loss of Yang et al. (2022) for
    unit-norm classifier and features (``E_W = E_H = 1``):
    ``lambda * mean_i 1/2 * (w_{y_i} . h_hat_i - 1) ** 2`` over the valid pixels (samples). Its
    gradient only moves ``h_hat`` along its own vertex ``w_y``: no other class pushes it.

    In Yang et al. the fixed ETF *is* the classifier and DR replaces cross-entropy. Here it is a
    regularizer like the others, added to whatever loss trains the model's own classifier; to
    follow the paper, use :meth:`make_classifier` as the model's classifier as well (its argmax
    is that of the paper: ``argmax_c w_c . h``) and give the main loss a weight of zero.

    Args:
        num_classes: number of classes ``C``.
        feat_dim: feature dimension ``D`` (at least ``C - 1``).
        dense: dense ``(B, D, h, w)`` or vector ``(B, D)`` features.
        lambda_dr: loss weight (default 1: the paper's only loss).
        ignore_index: label value to ignore.
        validate: the checks that sync the device: ``True`` every call, ``False`` never, an
            int ``N`` the first ``N`` calls (see :class:`Regularizer`).
        generator: optional ``torch.Generator`` for the ETF's random rotation.

    Attributes:
        weight: buffer ``(C, D)``, the fixed ETF classifier (float32, never trained).
        last_stats: ``loss_dr`` (weighted) and ``mean_cosine`` (``w_y . h_hat`` over valid items).

    Shape:
        - features: ``(B, D, h, w)`` or ``(B, D)``; labels ``(B, H, W)`` or ``(B,)``.
        - Output: ``()``.

    Raises:
        ValueError: ``feat_dim < num_classes - 1``, negative ``lambda_dr``, and every input
            check of :class:`Regularizer`.

    Example:
        >>> dr = ETFDotRegressionRegularizer(num_classes=3, feat_dim=4, dense=False)
        >>> round(dr(dr.weight[[0, 2]] * 5.0, torch.tensor([0, 2])).item(), 6)
        0.0
    """

    def __init__(
        self,
        num_classes: int,
        feat_dim: int,
        *,
        dense: bool = True,
        lambda_dr: float = 1.0,
        ignore_index: int | None = 255,
        validate: bool | int = True,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(
            num_classes, feat_dim, dense=dense, ignore_index=ignore_index, validate=validate
        )
        self.lambda_dr = check_non_negative("lambda_dr", lambda_dr)
        etf = make_anchors("etf", self.num_classes, self.feat_dim, generator=generator)
        self.register_buffer("weight", etf.float())

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """Cosine to each ETF vertex, ``W h_hat``: ``(B, D, h, w) -> (B, C, h, w)``, ``(B, D) -> (B, C)``."""
        weight = self.weight.to(torch.promote_types(features.dtype, torch.float32))
        normed = features.to(weight.dtype)
        normed = normed / normed.norm(dim=1, keepdim=True).clamp(min=_EPS)  # (B, D, ...)
        if features.dim() == 4:
            return F.conv2d(normed, weight[:, :, None, None])  # (B, C, h, w)
        return normed @ weight.T  # (B, C)

    def make_classifier(self) -> nn.Module:
        """A frozen bias-free ``nn.Conv2d`` 1x1 (dense) / ``nn.Linear`` holding a copy of ``W``."""
        c, d = self.num_classes, self.feat_dim
        layer = nn.Conv2d(d, c, 1, bias=False) if self.dense else nn.Linear(d, c, bias=False)
        with torch.no_grad():
            layer.weight.copy_(self.weight.reshape(layer.weight.shape))
        layer.weight.requires_grad_(False)
        return layer

    def compute(
        self,
        features: torch.Tensor,
        labels: torch.Tensor,
        valid: torch.Tensor,
        classifier: Callable[[torch.Tensor], torch.Tensor] | None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Dot regression of ``h_hat`` onto ``w_y``, averaged over valid pixels / samples."""
        with torch.autocast(features.device.type, enabled=False):
            cosine = self.logits(features)  # (B, C, h, w) or (B, C)
            safe = torch.where(valid, labels, torch.zeros_like(labels))  # (B, h, w) or (B,)
            own = cosine.gather(1, safe.unsqueeze(1)).squeeze(1)  # (B, h, w) or (B,)
            weight = valid.to(own.dtype)
            num_valid = weight.sum().clamp(min=1)
            loss = self.lambda_dr * (0.5 * (own - 1.0).square() * weight).sum() / num_valid
            mean_cosine = (own.detach() * weight).sum() / num_valid
        return loss, {"loss_dr": loss.detach(), "mean_cosine": mean_cosine}

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, lambda_dr={self.lambda_dr}"
