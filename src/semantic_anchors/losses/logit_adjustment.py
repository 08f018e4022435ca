"""Logit adjustment (Menon et al., ICLR 2021): the loss and the post-hoc correction.

Also home of the small checks shared by the long-tail losses (class frequencies, logits /
targets shapes, the ignore-aware mean).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from semantic_anchors._validation import check_int, check_non_negative, check_tensor

__all__ = ["LogitAdjustedLoss", "posthoc_adjust"]

_PRIOR_EPS = 1e-12  # keeps log(prior) finite for a class never seen in training


def _class_counts(
    class_frequencies: Sequence[float] | torch.Tensor, num_classes: int
) -> torch.Tensor:
    """``class_frequencies`` as a float64 ``(C,)`` tensor, checked: finite, >= 0, not all 0."""
    values = torch.as_tensor(class_frequencies, dtype=torch.float64).flatten()  # (C,)
    if values.numel() != num_classes:
        raise ValueError(
            f"`class_frequencies` must have num_classes={num_classes} entries, got {values.numel()}"
        )
    if not bool(torch.isfinite(values).all()) or bool((values < 0).any()):
        raise ValueError(f"`class_frequencies` must be finite and >= 0, got {values.tolist()[:10]}")
    if float(values.sum()) <= 0:
        raise ValueError("`class_frequencies` must not be all zero")
    return values


def _log_prior(
    class_frequencies: Sequence[float] | torch.Tensor, num_classes: int, tau: float
) -> torch.Tensor:
    """``tau * log(pi + 1e-12)`` with ``pi`` the normalised frequencies; float64 ``(C,)``."""
    counts = _class_counts(class_frequencies, num_classes)
    return tau * torch.log(counts / counts.sum() + _PRIOR_EPS)  # (C,)


def _check_logits(logits: torch.Tensor, targets: torch.Tensor, num_classes: int) -> None:
    """``(B, C)`` logits with ``(B,)`` targets or ``(B, C, H, W)`` with ``(B, H, W)``."""
    check_tensor("logits", logits)
    check_tensor("targets", targets)
    if logits.dim() not in (2, 4) or logits.shape[1] != num_classes:
        raise ValueError(
            f"`logits` must be (B, C) or (B, C, H, W) with C=num_classes={num_classes}, got "
            f"shape {tuple(logits.shape)}"
        )
    expected = (logits.shape[0], *logits.shape[2:])
    if tuple(targets.shape) != expected:
        raise ValueError(
            f"`targets` must have shape {expected} to match `logits` {tuple(logits.shape)}, got "
            f"{tuple(targets.shape)}"
        )
    if targets.dtype.is_floating_point or targets.dtype == torch.bool:
        raise ValueError(f"`targets` must hold integer class indices, got dtype {targets.dtype}")


def _ignore(ignore_index: int | None) -> int:
    """The ``ignore_index`` that ``F.cross_entropy`` takes (``-100`` stands for none)."""
    return -100 if ignore_index is None else ignore_index


def _compute_dtype(logits: torch.Tensor) -> torch.dtype:
    """Losses are computed in float32, or float64 for float64 logits (never in bf16 / fp16)."""
    return torch.promote_types(logits.dtype, torch.float32)


def _per_class(values: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """A ``(C,)`` vector shaped to broadcast over dim 1 of ``logits``, in its dtype."""
    shape = (1, -1) + (1,) * (logits.dim() - 2)
    return values.to(logits.dtype).view(shape)  # (1, C) or (1, C, 1, 1)


def _mean_over_valid(
    per_item: torch.Tensor, targets: torch.Tensor, ignore_index: int
) -> torch.Tensor:
    """Mean of ``per_item`` over the non-ignored targets; ``0`` when every target is ignored."""
    valid = targets != ignore_index
    return (per_item * valid).sum() / valid.sum().clamp(min=1)


def posthoc_adjust(
    logits: torch.Tensor,
    class_frequencies: Sequence[float] | torch.Tensor,
    tau: float = 1.0,
) -> torch.Tensor:
    """Post-hoc logit adjustment: ``logits - tau * log(pi)`` along dim 1.

    Predict with ``argmax`` of the result to trade head accuracy for tail accuracy
    (Menon et al. 2021; ``tau = 1`` is their default, ``tau = 0`` changes nothing).

    Args:
        logits: ``(B, C)`` or ``(B, C, H, W)`` scores of a model trained with plain CE.
        class_frequencies: ``(C,)`` training counts or frequencies (only ratios matter).
        tau: strength of the correction (>= 0).

    Shape:
        - logits: ``(B, C, ...)``. Output: same.

    Raises:
        ValueError: negative / non-finite / all-zero frequencies, the wrong number of them, or a
            negative ``tau``.

    Example:
        >>> posthoc_adjust(torch.zeros(1, 2), [3, 1]).argmax(1).item()
        1
    """
    tau = check_non_negative("tau", tau)
    check_tensor("logits", logits)
    offset = _log_prior(class_frequencies, logits.shape[1], tau)  # (C,)
    return logits - _per_class(offset, logits)


class LogitAdjustedLoss(nn.Module):
    """Logit-adjusted softmax cross-entropy: ``CE(logits + tau * log pi, y)``.

    Menon et al.'s loss ``-log softmax(f(x) + tau * log pi)_y`` with ``pi`` the training class
    prior (normalised ``class_frequencies``). ``log pi`` is computed as ``log(pi + 1e-12)``
    (here and in :func:`posthoc_adjust`) so a class with zero frequency gets a large but finite
    offset. ``tau = 0`` is plain CE.

    Args:
        num_classes: number of classes ``C``.
        class_frequencies: ``(C,)`` training counts (images for classification, pixels for
            segmentation) or frequencies; only ratios matter.
        tau: temperature of the adjustment (paper default 1).
        ignore_index: target value ignored by the loss (``None``: none).

    Shape:
        - logits: ``(B, C)`` or ``(B, C, H, W)``; targets ``(B,)`` or ``(B, H, W)``.
        - Output: ``()``, the mean over non-ignored targets (``0`` if there are none).

    Raises:
        ValueError: bad frequencies or ``tau``; per call, logits / targets of the wrong shape.

    Example:
        >>> loss = LogitAdjustedLoss(3, [100, 10, 1])
        >>> loss(torch.randn(4, 3), torch.tensor([0, 1, 2, 255])).shape
        torch.Size([])
    """

    def __init__(
        self,
        num_classes: int,
        class_frequencies: Sequence[float] | torch.Tensor,
        *,
        tau: float = 1.0,
        ignore_index: int | None = 255,
    ) -> None:
        super().__init__()
        self.num_classes = check_int("num_classes", num_classes, minimum=2)
        self.tau = check_non_negative("tau", tau)
        self.ignore_index = ignore_index
        offset = _log_prior(class_frequencies, num_classes, self.tau)  # (C,) float64
        self.register_buffer("offset", offset.float())

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        _check_logits(logits, targets, self.num_classes)
        ignore = _ignore(self.ignore_index)
        logits = logits.to(_compute_dtype(logits))
        adjusted = logits + _per_class(self.offset, logits)  # (B, C, ...)
        per_item = F.cross_entropy(adjusted, targets, ignore_index=ignore, reduction="none")
        return _mean_over_valid(per_item, targets, ignore)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, tau={self.tau}, ignore_index={self.ignore_index}"
