"""Generalized re-weighting (GRW, Zhang et al., CVPR 2021, DisAlign): class-weighted cross-entropy.

DisAlign's stage 2 trains its calibration with a cross-entropy whose class weights move the
training distribution towards a balanced reference: ``w_c ∝ (1 / r_c) ** rho`` with ``r_c`` the
training frequency of class ``c``, normalised so that the weights average 1 (they sum to ``C``).
``rho = 0`` is plain cross-entropy, ``rho = 1`` full inverse-frequency weighting.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from semantic_anchors._validation import check_choice, check_int, check_non_negative
from semantic_anchors.losses.logit_adjustment import (
    _check_logits,
    _class_counts,
    _compute_dtype,
    _ignore,
)

__all__ = ["GRW_DEFAULT_RHO", "GRWCrossEntropyLoss", "grw_weights"]

GRW_DEFAULT_RHO = {"classification": 1.2, "segmentation": 0.2}
"""The authors' ``rho`` (their ``exp_scale``): 1.2 in their ImageNet-LT classification config,
0.2 in their ADE20K segmentation config."""

REDUCTIONS = ("weighted-mean", "mean")


def grw_weights(class_frequencies: Sequence[float] | torch.Tensor, rho: float) -> torch.Tensor:
    """GRW class weights ``w_c = C' * r_c ** -rho / sum_j r_j ** -rho`` (float64 ``(C,)``).

    ``r_c`` are the normalised frequencies and the sum runs over the ``C'`` classes seen in
    training (``r_c > 0``), so the weights of those classes average 1; a class never seen gets
    weight 0 (it is never a training target).

    Args:
        class_frequencies: ``(C,)`` training counts (images or pixels) or frequencies.
        rho: the exponent (``>= 0``).

    Raises:
        ValueError: negative / non-finite / all-zero frequencies, or a negative ``rho``.

    Example:
        >>> grw_weights([4, 1], rho=1.0).tolist()
        [0.4, 1.6]
    """
    rho = check_non_negative("rho", rho)
    counts = _class_counts(class_frequencies, len(torch.as_tensor(class_frequencies).flatten()))
    ratio = counts / counts.sum()  # (C,)
    seen = ratio > 0
    raw = torch.where(seen, ratio.clamp(min=1e-300) ** -rho, torch.zeros_like(ratio))  # (C,)
    return raw / raw.sum() * seen.sum()


class GRWCrossEntropyLoss(nn.Module):
    """Cross-entropy with GRW class weights ``w_y`` (:func:`grw_weights`).

    Args:
        num_classes: number of classes ``C``.
        class_frequencies: ``(C,)`` training counts (images for classification, pixels for
            segmentation).
        rho: the exponent; ``None`` (default) takes the authors' value for the logits' task:
            1.2 for ``(B, C)`` logits, 0.2 for ``(B, C, H, W)`` (:data:`GRW_DEFAULT_RHO`).
        reduction: ``"weighted-mean"`` (``sum w_y l / sum w_y``, ``F.cross_entropy``'s weighted
            mean, as the authors' classification code), ``"mean"`` (``sum w_y l / N``, N the
            non-ignored targets, as their mmseg segmentation loss up to the ignored pixels), or
            ``None`` (default): the first for ``(B, C)`` logits, the second for dense ones.
        ignore_index: target value ignored by the loss (``None``: none).

    Shape:
        - logits: ``(B, C)`` or ``(B, C, H, W)``; targets ``(B,)`` or ``(B, H, W)``.
        - Output: ``()`` (``0`` when every target is ignored).

    Raises:
        ValueError: bad frequencies, ``rho`` or ``reduction``; per call, logits / targets of the
            wrong shape.

    Example:
        >>> loss = GRWCrossEntropyLoss(3, [100, 10, 1], rho=1.0)
        >>> loss(torch.randn(4, 3), torch.tensor([0, 1, 2, 255])).shape
        torch.Size([])
    """

    def __init__(
        self,
        num_classes: int,
        class_frequencies: Sequence[float] | torch.Tensor,
        *,
        rho: float | None = None,
        reduction: str | None = None,
        ignore_index: int | None = 255,
    ) -> None:
        super().__init__()
        self.num_classes = check_int("num_classes", num_classes, minimum=2)
        counts = _class_counts(class_frequencies, num_classes)  # (C,) checked
        self.rho = None if rho is None else check_non_negative("rho", rho)
        self.reduction = (
            None if reduction is None else check_choice("reduction", reduction, REDUCTIONS)
        )
        self.ignore_index = ignore_index
        for task, default in GRW_DEFAULT_RHO.items():  # one weight vector per task when rho=None
            value = default if self.rho is None else self.rho
            self.register_buffer(f"weight_{task}", grw_weights(counts, value).float())

    def class_weights(self, dense: bool) -> torch.Tensor:
        """The ``(C,)`` weights used for dense (``True``) or vector logits."""
        return self.weight_segmentation if dense else self.weight_classification

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        _check_logits(logits, targets, self.num_classes)
        dense = logits.dim() == 4
        ignore = _ignore(self.ignore_index)
        logits = logits.to(_compute_dtype(logits))  # (B, C, ...)
        weight = self.class_weights(dense).to(logits.dtype)  # (C,)
        per_item = F.cross_entropy(
            logits, targets, weight=weight, ignore_index=ignore, reduction="none"
        )  # (B, ...) w_y * CE, 0 where ignored
        valid = targets != ignore  # (B, ...)
        reduction = self.reduction or ("mean" if dense else "weighted-mean")
        if reduction == "mean":
            return per_item.sum() / valid.sum().clamp(min=1)
        safe = torch.where(valid, targets, torch.zeros_like(targets))  # (B, ...)
        total_weight = (weight[safe] * valid).sum()
        return per_item.sum() / total_weight.clamp(min=torch.finfo(logits.dtype).tiny)

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, rho={self.rho}, reduction={self.reduction}, "
            f"ignore_index={self.ignore_index}"
        )
