"""The contract every regularizer follows: ``loss = reg(features, labels, classifier)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from semantic_anchors._validation import (
    check_callable,
    check_finite,
    check_ignore_index,
    check_int,
    check_labels,
    check_nonempty,
    check_tensor,
)
from semantic_anchors.functional.p2a import resize_labels

__all__ = ["Regularizer", "finite_rows"]


def finite_rows(values: torch.Tensor) -> torch.Tensor:
    """``(C,)`` bool: which rows of a ``(C, ...)`` state update hold only finite values.

    Every regularizer's state update is masked by it (no sync), so a non-finite step never enters
    the EMA anchors, prototypes or memories: the project's non-finite policy
    (``semantic_anchors.train.divergence``)."""
    return torch.isfinite(values).flatten(1).all(dim=1)


class Regularizer(nn.Module):
    """Base class: validates inputs, resizes dense labels, then calls :meth:`compute`.

    Subclasses implement ``compute(features, labels, valid, classifier)`` and return
    ``(loss, stats)`` where ``stats`` maps names to detached scalar tensors; they are exposed as
    Python numbers through :attr:`last_stats` (converted lazily, so logging costs no device sync
    unless it is read).

    Args:
        num_classes: number of classes ``C`` (>= 2).
        feat_dim: feature dimension ``D`` (>= 1).
        dense: ``True`` for dense ``(B, D, h, w)`` features (segmentation), ``False`` for vector
            ``(B, D)`` features (classification).
        ignore_index: label value that is ignored (default 255); ``None`` for no ignore value.
            It must not be a class index: with ``num_classes > 255`` pass e.g. ``-1`` or None.
        validate: the checks that force a device sync (finite features, label range): ``True``
            on every call, ``False`` never, or an int ``N``: on the first ``N`` calls only (the
            training module's default, so a training step is free of host-device syncs once a
            run has shown its inputs are sound).

    Raises:
        ValueError: ``num_classes < 2``, ``feat_dim < 1``, or ``ignore_index`` in
            ``[0, num_classes)`` (it would silently ignore that class).
        TypeError: a non-int ``num_classes`` / ``feat_dim`` / ``ignore_index`` or a non-bool
            ``dense``.
    """

    requires_classifier: bool = False

    def __init__(
        self,
        num_classes: int,
        feat_dim: int,
        *,
        dense: bool = True,
        ignore_index: int | None = 255,
        validate: bool | int = True,
    ) -> None:
        super().__init__()
        self.num_classes = check_int("num_classes", num_classes, minimum=2)
        self.feat_dim = check_int("feat_dim", feat_dim, minimum=1)
        if not isinstance(dense, bool):
            raise TypeError(f"`dense` must be a bool, got {dense!r}")
        self.dense = dense
        self.ignore_index = check_ignore_index(ignore_index, self.num_classes)
        if isinstance(validate, bool):
            self.validate: bool | int = validate
        else:
            self.validate = check_int("validate", validate, minimum=0)
        self._checks_left = None if isinstance(validate, bool) else self.validate
        self._checking = bool(validate)
        self._last_stats: dict[str, torch.Tensor] = {}

    # ------------------------------------------------------------------ input handling
    def _check_features(self, features: torch.Tensor) -> None:
        check_tensor("features", features)
        expected_rank = 4 if self.dense else 2
        form = "(B, D, h, w) dense" if self.dense else "(B, D) vector"
        if features.dim() != expected_rank:
            hint = ""
            if not self.dense and features.dim() == 4:
                hint = "; dense features need a regularizer built with dense=True"
            elif self.dense and features.dim() == 2:
                hint = "; vector features need a regularizer built with dense=False"
            raise ValueError(
                f"`features` must be {form} features (rank {expected_rank}), got shape "
                f"{tuple(features.shape)}{hint}"
            )
        if features.shape[1] != self.feat_dim:
            raise ValueError(
                f"`features` must have feat_dim={self.feat_dim} channels in dim 1, got "
                f"{features.shape[1]} (shape {tuple(features.shape)})"
            )
        check_nonempty("features", features, f"{form} features")
        if not features.dtype.is_floating_point:
            raise ValueError(f"`features` must be floating point, got dtype {features.dtype}")
        if self._checking:
            check_finite("features", features)

    def _prepare_labels(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_tensor("labels", labels)
        if self.dense and labels.dim() == 4 and labels.shape[1] == 1:
            labels = labels[:, 0]  # (B, H, W)
        expected_rank = 3 if self.dense else 1
        form = "(B, H, W)" if self.dense else "(B,)"
        if labels.dim() != expected_rank:
            raise ValueError(f"`labels` must have shape {form}, got {tuple(labels.shape)}")
        check_nonempty("labels", labels, f"{form} labels")
        if labels.shape[0] != features.shape[0]:
            raise ValueError(
                f"`labels` batch size must match `features` ({features.shape[0]}), got "
                f"{labels.shape[0]}"
            )
        check_labels("labels", labels, self.num_classes, self.ignore_index, validate=self._checking)
        if self.dense:
            labels = resize_labels(labels, tuple(features.shape[-2:]))  # (B, h, w)
        return labels.long()

    def _next_call_checks(self) -> bool:
        """Whether this call runs the syncing checks (counts down an int ``validate``)."""
        if self._checks_left is None:
            return bool(self.validate)
        if self._checks_left <= 0:
            return False
        self._checks_left -= 1
        return True

    def _valid_mask(self, labels: torch.Tensor) -> torch.Tensor:
        if self.ignore_index is None:
            return torch.ones_like(labels, dtype=torch.bool)
        return labels != self.ignore_index

    # ------------------------------------------------------------------ public API
    def forward(
        self,
        features: torch.Tensor,
        labels: torch.Tensor,
        classifier: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Return the scalar regularization loss for one batch.

        Args:
            features: ``(B, D, h, w)`` (dense) or ``(B, D)`` (vector) pre-classifier features.
            labels: ``(B, H, W)`` (resized to ``(h, w)`` by nearest interpolation) or ``(B,)``.
            classifier: the model's final classifier, when the regularizer needs it.

        Raises:
            ValueError: wrong feature rank or dimension, an empty batch or a 0-sized spatial
                dimension (features or labels), batch mismatch, float labels, labels out of
                range, non-finite features, a missing classifier.
            TypeError: arguments that are not tensors / callables.
        """
        self._checking = self._next_call_checks()
        self._check_features(features)
        labels = self._prepare_labels(features, labels)
        valid = self._valid_mask(labels)
        if self.requires_classifier:
            if classifier is None:
                raise ValueError(
                    f"`classifier` is required by {type(self).__name__}: pass the model's final "
                    "classifier (nn.Conv2d 1x1 / nn.Linear / callable (C, D) -> (C, C)), got None"
                )
            check_callable("classifier", classifier)
        loss, stats = self.compute(features, labels, valid, classifier)
        self._last_stats = stats
        return loss

    def compute(
        self,
        features: torch.Tensor,
        labels: torch.Tensor,
        valid: torch.Tensor,
        classifier: Callable[[torch.Tensor], torch.Tensor] | None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Compute ``(loss, stats)`` from validated inputs (labels at feature resolution)."""
        raise NotImplementedError

    @property
    def last_stats_tensors(self) -> dict[str, torch.Tensor]:
        """Detached 0-d tensors of the last call, on the features' device: reading them costs
        no host-device sync (log them as tensors; :attr:`last_stats` converts and syncs)."""
        return dict(self._last_stats)

    @property
    def last_stats(self) -> dict[str, Any]:
        """Detached values of the last call as Python numbers (empty before the first call)."""
        out: dict[str, Any] = {}
        for key, value in self._last_stats.items():
            item = value.item()
            out[key] = bool(item) if value.dtype == torch.bool else item
        return out

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, feat_dim={self.feat_dim}, dense={self.dense}"
