"""Prototype (EM-paradigm) regularizer of the paper's Eq. 1-2: pull features to batch class means."""

from __future__ import annotations

from collections.abc import Callable

import torch

from semantic_anchors._validation import check_float_in, check_non_negative
from semantic_anchors.functional.p2a import pixel_to_anchor_loss
from semantic_anchors.regularizers.base import Regularizer, finite_rows

__all__ = ["PrototypeRegularizer"]


def _flatten_pixels(
    features: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One row per pixel (or sample), in at least float32; ignored rows keep a safe label 0.

    Shared with the CAR and center-loss regularizers.

    Shape:
        - features: ``(B, D, h, w)`` or ``(B, D)``; labels, valid: ``(B, h, w)`` or ``(B,)``.
        - Output: ``(P, D)`` features, ``(P,)`` labels in ``[0, C)``, ``(P,)`` bool mask.
    """
    dtype = torch.promote_types(features.dtype, torch.float32)
    if features.dim() == 4:
        features = features.permute(0, 2, 3, 1).reshape(-1, features.shape[1])  # (P, D)
    flat = features.to(dtype)  # (P, D)
    valid = valid.reshape(-1)  # (P,)
    safe = torch.where(valid, labels.reshape(-1), torch.zeros_like(valid, dtype=torch.long))  # (P,)
    return flat, safe, valid


def _class_means(
    flat: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class mean of the valid rows (Eq. 1 over the whole batch) and per-class counts.

    Differentiable with respect to ``flat``; absent classes get a zero mean and count 0. Ignored
    rows are routed to an extra bin ``C`` that is dropped, so no one-hot tensor is built.

    Shape:
        - flat: ``(P, D)``; labels, valid: ``(P,)``.
        - Output: ``(C, D)`` means, ``(C,)`` counts (same dtype as ``flat``).
    """
    bins = torch.where(valid, labels, torch.full_like(labels, num_classes))  # (P,)
    sums = flat.new_zeros(num_classes + 1, flat.shape[1]).index_add(0, bins, flat)  # (C+1, D)
    counts = flat.new_zeros(num_classes + 1).index_add(0, bins, flat.new_ones(bins.shape))
    counts = counts[:num_classes]  # (C,)
    return sums[:num_classes] / counts.clamp(min=1)[:, None], counts  # (C, D), (C,)


class PrototypeRegularizer(Regularizer):
    """Pull features to their class prototype, the detached mean of the batch's class features.

    The EM-paradigm baseline of the paper (Eq. 1-2): prototypes ``P^c`` are the mean feature of
    the valid pixels (samples) of class ``c`` over the whole batch (the paper's footnote 1),
    treated as constants (E-step), and the features are pulled to ``Y . P`` with the same
    distance SAR uses, the MSE averaged over channels and valid pixels (M-step). With
    ``momentum > 0`` the prototypes are an EMA memory over batches instead
    (``P <- m P + (1 - m) P_batch`` for the classes present; the first sighting copies), as
    memory-bank prototype methods do.

    Args:
        num_classes: number of classes ``C``.
        feat_dim: feature dimension ``D``.
        dense: dense ``(B, D, h, w)`` or vector ``(B, D)`` features.
        lambda_p2p: loss weight ``lambda`` of Eq. 2 (default 0.1, as SAR's ``lambda_p2a``, so the
            two differ only in their targets).
        momentum: EMA factor of the prototype memory in ``[0, 1)``; ``0`` (default) uses the
            current batch's prototypes only (Eq. 1).
        ignore_index: label value to ignore.
        validate: the checks that sync the device: ``True`` every call, ``False`` never, an
            int ``N`` the first ``N`` calls (see :class:`Regularizer`).

    Attributes:
        prototypes: buffer ``(C, D)`` float32: the memory (with ``momentum > 0``) or the last
            training batch's prototypes (rows of classes seen so far), for diagnostics.
        initialized: buffer ``(C,)`` bool, which rows of ``prototypes`` hold a value.
        last_stats: ``loss_p2p`` (weighted) and ``num_present`` (classes in the batch).

    Shape:
        - features: ``(B, D, h, w)`` or ``(B, D)``; labels ``(B, H, W)`` or ``(B,)``.
        - Output: ``()``.

    Raises:
        ValueError: negative ``lambda_p2p``, ``momentum`` outside ``[0, 1)``, and every input
            check of :class:`Regularizer`.

    Example:
        >>> proto = PrototypeRegularizer(num_classes=3, feat_dim=8, momentum=0.9)
        >>> proto(torch.randn(2, 8, 4, 4), torch.randint(0, 3, (2, 16, 16))).shape
        torch.Size([])
    """

    def __init__(
        self,
        num_classes: int,
        feat_dim: int,
        *,
        dense: bool = True,
        lambda_p2p: float = 0.1,
        momentum: float = 0.0,
        ignore_index: int | None = 255,
        validate: bool | int = True,
    ) -> None:
        super().__init__(
            num_classes, feat_dim, dense=dense, ignore_index=ignore_index, validate=validate
        )
        self.lambda_p2p = check_non_negative("lambda_p2p", lambda_p2p)
        self.momentum = check_float_in("momentum", momentum, 0.0, 1.0, high_open=True)
        self.register_buffer("prototypes", torch.zeros(self.num_classes, self.feat_dim))
        self.register_buffer("initialized", torch.zeros(self.num_classes, dtype=torch.bool))

    @torch.no_grad()
    def _update_memory(self, batch_means: torch.Tensor, present: torch.Tensor) -> None:
        new = batch_means.to(self.prototypes.dtype)  # (C, D)
        present = present & finite_rows(new)  # a non-finite batch mean is never taken in
        ema = self.momentum * self.prototypes + (1.0 - self.momentum) * new  # (C, D)
        new = torch.where(self.initialized[:, None], ema, new)  # (C, D)
        self.prototypes.copy_(torch.where(present[:, None], new, self.prototypes))
        self.initialized |= present

    def compute(
        self,
        features: torch.Tensor,
        labels: torch.Tensor,
        valid: torch.Tensor,
        classifier: Callable[[torch.Tensor], torch.Tensor] | None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Batch prototypes (no gradient), optional EMA update, then the MSE to ``Y . P``."""
        with torch.no_grad():
            flat, safe, flat_valid = _flatten_pixels(features.detach(), labels, valid)
            means, counts = _class_means(flat, safe, flat_valid, self.num_classes)  # (C, D), (C,)
            present = counts > 0  # (C,)
        if self.training:
            self._update_memory(means, present)
        targets = means  # (C, D) current batch (Eq. 1)
        if self.momentum > 0:
            targets = torch.where(self.initialized[:, None], self.prototypes.to(means), means)
        loss = self.lambda_p2p * pixel_to_anchor_loss(features, labels, targets, valid)
        return loss, {"loss_p2p": loss.detach(), "num_present": present.sum()}

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, lambda_p2p={self.lambda_p2p}, momentum={self.momentum}"
