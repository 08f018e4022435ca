"""LDAM loss with deferred re-weighting (Cao et al., NeurIPS 2019)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from semantic_anchors._validation import check_float_in, check_int, check_non_negative
from semantic_anchors.losses.logit_adjustment import (
    _check_logits,
    _class_counts,
    _compute_dtype,
    _ignore,
)

__all__ = ["LDAMLoss"]


class LDAMLoss(nn.Module):
    """Label-distribution-aware margin loss, with class-balanced weights switched on late (DRW).

    The target logit is lowered by a class margin ``m_j = K / n_j ** (1/4)``, with ``K`` chosen so
    that the largest margin (rarest class) is ``max_margin``, and the logits are scaled by ``s``:
    ``CE_w(s * (z - m_y e_y), y)``. From training step ``drw_start_step`` on, the cross-entropy is
    weighted per class by the effective-number weights ``w_j = (1 - beta) / (1 - beta ** n_j)``,
    normalised to sum to ``C``, and the weighted mean ``sum_i w_{y_i} l_i / sum_i w_{y_i}`` is
    taken (``F.cross_entropy(weight=...)``, as the authors do); before it, all weights are 1.

    The step is set from outside: the training loop calls :meth:`set_step` with the optimizer
    step before each training step (e.g. ``if hasattr(criterion, "set_step"):
    criterion.set_step(global_step)``). A loop that never calls it never re-weights.

    The authors pair LDAM with a cosine ("NormedLinear") classifier, whose logits lie in
    ``[-1, 1]``: ``s = 30`` is chosen for those. With an ordinary linear classifier, lower
    ``scale`` (e.g. to 1) or normalise the logits.

    Args:
        num_classes: number of classes ``C``.
        class_frequencies: ``(C,)`` training **counts** (images, or pixels for segmentation):
            the effective number needs counts, not fractions. A zero count is treated as the
            smallest positive one.
        max_margin: largest margin (authors: 0.5).
        scale: logit scale ``s`` (authors: 30).
        beta: effective-number hyper-parameter (authors: 0.9999).
        drw_start_step: first step with the class-balanced weights; the authors switch at 80%
            of training (epoch 160 of 200), e.g. ``int(0.8 * max_steps)``. ``None``: never (LDAM
            alone).
        ignore_index: target value ignored by the loss (``None``: none).

    Attributes:
        margins: buffer ``(C,)``, ``m_j``.
        drw_weights: buffer ``(C,)``, the class-balanced weights used from ``drw_start_step``.

    Shape:
        - logits: ``(B, C)`` or ``(B, C, H, W)``; targets ``(B,)`` or ``(B, H, W)``.
        - Output: ``()``.

    Raises:
        ValueError: bad frequencies, ``max_margin`` / ``scale`` < 0, ``beta`` outside ``[0, 1)``,
            a negative ``drw_start_step``; per call, logits / targets of the wrong shape.

    Example:
        >>> loss = LDAMLoss(3, [100, 10, 1], drw_start_step=10)
        >>> loss.set_step(10)
        >>> loss(torch.randn(4, 3), torch.tensor([0, 1, 2, 2])).shape
        torch.Size([])
    """

    def __init__(
        self,
        num_classes: int,
        class_frequencies: Sequence[float] | torch.Tensor,
        *,
        max_margin: float = 0.5,
        scale: float = 30.0,
        beta: float = 0.9999,
        drw_start_step: int | None = None,
        ignore_index: int | None = 255,
    ) -> None:
        super().__init__()
        self.num_classes = check_int("num_classes", num_classes, minimum=2)
        self.max_margin = check_non_negative("max_margin", max_margin)
        self.scale = check_non_negative("scale", scale)
        self.beta = check_float_in("beta", beta, 0.0, 1.0, high_open=True)
        if drw_start_step is not None:
            check_int("drw_start_step", drw_start_step, minimum=0)
        self.drw_start_step = drw_start_step
        self.ignore_index = ignore_index
        self.step = 0
        counts = _class_counts(class_frequencies, num_classes)  # (C,) float64
        counts = torch.where(counts > 0, counts, counts[counts > 0].min())
        margins = counts ** (-0.25)  # (C,)
        margins = margins * (self.max_margin / margins.max())
        weights = (1.0 - self.beta) / (1.0 - self.beta**counts)  # (C,)
        weights = weights / weights.sum() * num_classes
        self.register_buffer("margins", margins.float())
        self.register_buffer("drw_weights", weights.float())

    def set_step(self, step: int) -> None:
        """Tell the loss the current training step (re-weighting starts at ``drw_start_step``)."""
        self.step = int(step)

    @property
    def reweighting(self) -> bool:
        """Whether the class-balanced (DRW) weights apply at the current step."""
        return self.drw_start_step is not None and self.step >= self.drw_start_step

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        _check_logits(logits, targets, self.num_classes)
        ignore = _ignore(self.ignore_index)
        logits = logits.to(_compute_dtype(logits))  # (B, C, ...)
        safe = torch.where(targets == ignore, torch.zeros_like(targets), targets).unsqueeze(1)
        margin = self.margins.to(logits.dtype)[safe]  # (B, 1, ...)
        adjusted = logits.scatter_add(1, safe, -margin)  # z - m_y e_y  (B, C, ...)
        weight = self.drw_weights.to(logits.dtype) if self.reweighting else None
        per_item = F.cross_entropy(
            self.scale * adjusted, targets, weight=weight, ignore_index=ignore, reduction="none"
        )  # (B, ...) already multiplied by w_y, 0 where ignored
        valid = targets != ignore
        norm = valid.to(logits.dtype) if weight is None else weight[safe.squeeze(1)] * valid
        return per_item.sum() / norm.sum().clamp(min=torch.finfo(logits.dtype).tiny)

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, max_margin={self.max_margin}, scale={self.scale}, "
            f"beta={self.beta}, drw_start_step={self.drw_start_step}, "
            f"ignore_index={self.ignore_index}"
        )
