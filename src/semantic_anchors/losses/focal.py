"""Focal loss (Lin et al., ICCV 2017) in its multi-class softmax form."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from semantic_anchors._validation import check_int, check_non_negative
from semantic_anchors.losses.logit_adjustment import (
    _check_logits,
    _compute_dtype,
    _ignore,
    _mean_over_valid,
)

__all__ = ["FocalLoss"]


class FocalLoss(nn.Module):
    """``FL = -alpha_y * (1 - p_y) ** gamma * log p_y``, averaged over non-ignored targets.

    Lin et al. define the focal loss on per-class sigmoid outputs for dense detection; this is
    the softmax form used for multi-class classification and segmentation, with
    ``p_y = softmax(logits)_y``. ``gamma = 0`` without ``alpha`` is plain cross-entropy. The sum
    is divided by the number of non-ignored targets (not by the sum of the ``alpha`` weights).

    Args:
        num_classes: number of classes ``C``.
        class_frequencies: accepted for a uniform builder interface, unused.
        gamma: focusing parameter (paper: 2).
        alpha: ``None`` (no weighting, default), a float (every class), or ``C`` per-class
            weights ``alpha_j`` (>= 0).
        ignore_index: target value ignored by the loss (``None``: none).

    Shape:
        - logits: ``(B, C)`` or ``(B, C, H, W)``; targets ``(B,)`` or ``(B, H, W)``.
        - Output: ``()`` (``0`` when every target is ignored).

    Raises:
        ValueError: negative ``gamma``, negative / non-finite ``alpha`` or the wrong number of
            entries; per call, logits / targets of the wrong shape.

    Example:
        >>> loss = FocalLoss(3, gamma=2.0, alpha=[0.25, 0.5, 1.0])
        >>> loss(torch.randn(4, 3), torch.tensor([0, 1, 2, 255])).shape
        torch.Size([])
    """

    def __init__(
        self,
        num_classes: int,
        class_frequencies: Sequence[float] | torch.Tensor | None = None,
        *,
        gamma: float = 2.0,
        alpha: float | Sequence[float] | None = None,
        ignore_index: int | None = 255,
    ) -> None:
        super().__init__()
        self.num_classes = check_int("num_classes", num_classes, minimum=2)
        self.gamma = check_non_negative("gamma", gamma)
        self.ignore_index = ignore_index
        self.alpha: torch.Tensor | None
        if alpha is None:
            self.register_buffer("alpha", None)
        else:
            if isinstance(alpha, (int, float)) and not isinstance(alpha, bool):
                alpha = [float(alpha)] * num_classes
            values = torch.as_tensor(alpha, dtype=torch.float32).flatten()  # (C,)
            if values.numel() != num_classes:
                raise ValueError(
                    f"`alpha` must be a float or have num_classes={num_classes} entries, got "
                    f"{values.numel()}"
                )
            if not bool(torch.isfinite(values).all()) or bool((values < 0).any()):
                raise ValueError(f"`alpha` must be finite and >= 0, got {values.tolist()[:10]}")
            self.register_buffer("alpha", values)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        _check_logits(logits, targets, self.num_classes)
        ignore = _ignore(self.ignore_index)
        logits = logits.to(_compute_dtype(logits))  # (B, C, ...)
        ce = F.cross_entropy(logits, targets, ignore_index=ignore, reduction="none")  # (B, ...)
        # 1 - p_y, accurate for small CE; clamped above 0 so gamma < 1 keeps a finite gradient.
        one_minus_p = (-torch.expm1(-ce)).clamp(min=torch.finfo(ce.dtype).tiny)  # (B, ...)
        per_item = one_minus_p**self.gamma * ce  # (B, ...) 0 where ignored (ce = 0)
        if self.alpha is not None:
            safe = torch.where(targets == ignore, torch.zeros_like(targets), targets)
            per_item = per_item * self.alpha.to(logits.dtype)[safe]
        return _mean_over_valid(per_item, targets, ignore)

    def extra_repr(self) -> str:
        alpha = None if self.alpha is None else self.alpha.tolist()
        return f"num_classes={self.num_classes}, gamma={self.gamma}, alpha={alpha}"
