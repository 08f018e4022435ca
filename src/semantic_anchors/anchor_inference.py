"""Anchor-aware inference: classifier logits fused with the similarity to SAR's semantic anchors.

Beyond the paper. Its limitation D.1 reads "we did not use these semantic anchors during the
testing phase" and proposes to use them "during inference through a query-based classification
idea". SAR pulls every feature towards the semantic anchor ``A_hat[y]`` of its class (Eq. 4), so
after training the anchors are class queries in feature space, and the similarity of a feature to
each anchor is a second classifier that costs one ``(B, D) x (D, C)`` product::

    fused = forward_head(f) + beta * anchor_logits(f, A_hat)

``beta = 0`` is the plain model. :func:`anchor_logits` computes the anchor term;
:class:`AnchorFusedModel` wraps a model of the package's contract (``forward_features`` /
``forward_head``) with the semantic anchors of a trained :class:`SemanticAnchorRegularizer`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from semantic_anchors._validation import check_choice, check_non_negative
from semantic_anchors.functional.resize import upsample_like
from semantic_anchors.regularizers.base import Regularizer
from semantic_anchors.regularizers.sar import SemanticAnchorRegularizer

__all__ = [
    "ANCHOR_METRICS",
    "DEFAULT_COSINE_TEMPERATURE",
    "AnchorFusedModel",
    "anchor_logits",
    "check_anchors_initialized",
]

ANCHOR_METRICS = ("l2", "cosine")
DEFAULT_COSINE_TEMPERATURE = 0.1
"""Cosine temperature: similarities in ``[-1, 1]`` become logits in ``[-10, 10]`` (as the 0.1 of
cosine classifiers and of query-based heads), the range of a trained classifier's logits."""


def _check_temperature(temperature: Any) -> float | None:
    if temperature is None:
        return None
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise TypeError(f"`temperature` must be a float > 0 or None, got {temperature!r}")
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"`temperature` must be a finite float > 0 or None, got {temperature}")
    return float(temperature)


def anchor_logits(
    features: torch.Tensor,
    anchors: torch.Tensor,
    *,
    metric: str = "l2",
    temperature: float | None = None,
) -> torch.Tensor:
    """Logits from the similarity of each feature to each class anchor.

    * ``"l2"``: ``-||f - A_c||^2 / T``; the default ``T = D`` makes it minus the mean squared
      error over channels, the quantity SAR's pixel-to-anchor loss (Eq. 4) minimises.
    * ``"cosine"``: ``cos(f, A_c) / T``; default ``T =`` :data:`DEFAULT_COSINE_TEMPERATURE`.

    The square is expanded (``||f||^2 - 2 f.A_c + ||A_c||^2``, clamped at 0), so memory is that of
    the output: no ``(B, C, D, h, w)`` difference tensor. The result is computed with autocast off,
    in ``promote_types(features.dtype, float32)`` (float32 for half-precision features).

    Args:
        features: dense ``(B, D, h, w)`` or vector ``(B, D)`` features (a model's
            ``forward_features``).
        anchors: ``(C, D)`` class anchors, e.g. SAR's ``semantic_anchors``.
        metric: ``"l2"`` or ``"cosine"``.
        temperature: ``T > 0``, or None for the metric's default.

    Returns:
        ``(B, C, h, w)`` or ``(B, C)`` logits.

    Shape:
        - features: ``(B, D, h, w)`` or ``(B, D)``.
        - anchors: ``(C, D)``.
        - Output: ``(B, C, h, w)`` or ``(B, C)``.

    Raises:
        TypeError: ``features`` or ``anchors`` is not a tensor, or ``temperature`` not a number.
        ValueError: ``features`` not floating point of rank 2 or 4, ``anchors`` not ``(C, D)`` with
            the features' ``D``, an unknown ``metric``, or ``temperature <= 0``.

    Example:
        >>> anchors = torch.eye(3, 4)  # 3 classes, D = 4
        >>> features = torch.zeros(1, 4, 2, 2)
        >>> features[0, 1] = 1.0  # every pixel sits on the anchor of class 1
        >>> anchor_logits(features, anchors).argmax(1)
        tensor([[[1, 1],
                 [1, 1]]])
    """
    for name, value in (("features", features), ("anchors", anchors)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"`{name}` must be a torch.Tensor, got {type(value).__name__}")
    if features.dim() not in (2, 4) or not features.is_floating_point():
        raise ValueError(
            "`features` must be a floating-point (B, D, h, w) or (B, D) tensor, got "
            f"shape {tuple(features.shape)} and dtype {features.dtype}"
        )
    dim = features.shape[1]
    if anchors.dim() != 2 or anchors.shape[1] != dim or not anchors.is_floating_point():
        raise ValueError(
            f"`anchors` must be a floating-point (C, D={dim}) tensor (D of the features), got "
            f"shape {tuple(anchors.shape)} and dtype {anchors.dtype}"
        )
    check_choice("metric", metric, ANCHOR_METRICS)
    temperature = _check_temperature(temperature)
    dtype = torch.promote_types(features.dtype, torch.float32)
    with torch.autocast(features.device.type, enabled=False):
        f = features.to(dtype)  # (B, D, h, w) or (B, D)
        a = anchors.to(device=f.device, dtype=dtype)  # (C, D)
        if metric == "cosine":
            t = DEFAULT_COSINE_TEMPERATURE if temperature is None else temperature
            cos = _dot(F.normalize(f, dim=1), F.normalize(a, dim=1))  # (B, C, h, w) or (B, C)
            return cos / t
        t = float(dim) if temperature is None else temperature
        a_sq = a.square().sum(1)  # (C,)
        if f.dim() == 4:
            a_sq = a_sq[None, :, None, None]  # (1, C, 1, 1)
        f_sq = f.square().sum(1, keepdim=True)  # (B, 1, h, w) or (B, 1)
        dist = (f_sq - 2 * _dot(f, a) + a_sq).clamp_min_(0)  # (B, C, h, w) or (B, C)
        return dist.div_(-t)


def _dot(f: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """``f . a_c`` for every class: a 1x1 convolution (dense) or a matrix product (vector)."""
    if f.dim() == 4:
        return F.conv2d(f, a[:, :, None, None])  # (B, C, h, w)
    return f @ a.T  # (B, C)


def check_anchors_initialized(
    initialized: torch.Tensor, class_names: Sequence[str] | None = None
) -> None:
    """Raise unless every class's semantic anchor holds a value (SAR's gate opened for it).

    Args:
        initialized: SAR's ``(C,)`` bool ``initialized`` buffer.
        class_names: optional names, quoted in the message next to the indices.

    Raises:
        ValueError: some classes were never initialized; the message names them.
    """
    missing = (~initialized.bool()).nonzero().flatten().tolist()
    if not missing:
        return
    names = [
        f"{i} ({class_names[i]!r})" if class_names is not None and i < len(class_names) else str(i)
        for i in missing
    ]
    listed = ", ".join(names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "")
    raise ValueError(
        f"the semantic anchors of {len(missing)} of {initialized.numel()} classes were never "
        f"initialized (SAR's gate never opened for them): classes {listed}; train longer, or with "
        "a lower regularizer.delta, before using anchor-aware inference"
    )


class AnchorFusedModel(nn.Module):
    """A model whose logits are fused with the similarity of its features to class anchors.

    ``forward(x)`` computes ``forward_head(f) + beta * anchor_logits(f, anchors)`` on the model's
    features ``f = forward_features(x)``, at feature resolution, then (dense models) upsamples it
    bilinearly to the input like the model's own ``forward``. With ``beta == 0`` it returns
    ``model(x)`` itself, bit for bit.

    Args:
        model: a model of the package's contract (``forward_features``, ``forward_head``), e.g. a
            trained ``Segmentor`` or ``ClassificationModel``; it is wrapped, not copied.
        anchors: a trained :class:`SemanticAnchorRegularizer` (its ``semantic_anchors``, every
            class initialized) or a ``(C, D)`` tensor of anchors. A copy is stored as the buffer
            ``anchors``.
        beta: weight of the anchor logits (``>= 0``; 0 is the plain model).
        metric: ``"l2"`` or ``"cosine"`` (see :func:`anchor_logits`).
        temperature: ``T > 0`` of :func:`anchor_logits`, or None for the metric's default.
        initialized: optional ``(C,)`` bool mask of the tensor ``anchors``' valid rows (taken from
            the regularizer when one is given).
        class_names: optional class names for the error messages (default: the model's
            ``class_names`` attribute, which exported models have).

    Attributes:
        model: the wrapped model.
        anchors: buffer ``(C, D)``, float32 (or the anchors' wider float dtype).
        beta, metric, temperature: as given; ``beta`` may be changed between calls.

    Shape:
        - x: the model's input, e.g. ``(B, C_in, H, W)``.
        - Output: the model's logits, ``(B, C, H, W)`` (dense) or ``(B, C)``.

    Raises:
        TypeError: ``anchors`` is neither a regularizer nor a tensor, or ``model`` lacks
            ``forward_features`` / ``forward_head``.
        ValueError: a regularizer other than SAR; anchors not ``(num_classes, feat_dim)`` of the
            model or not finite; classes whose semantic anchor was never initialized (named);
            ``beta < 0``; an unknown ``metric``; ``temperature <= 0``.

    Example:
        >>> from semantic_anchors import SemanticAnchorRegularizer
        >>> from semantic_anchors.models import create_model
        >>> model = create_model("fcn_small", num_classes=4).eval()
        >>> sar = SemanticAnchorRegularizer(4, model.feat_dim)
        >>> sar.initialized.fill_(True)  # in practice: SAR's gate opened during training
        tensor([True, True, True, True])
        >>> x = torch.randn(2, 3, 32, 32)
        >>> fused = AnchorFusedModel(model, sar, beta=0.5)
        >>> fused(x).shape
        torch.Size([2, 4, 32, 32])
        >>> fused.beta = 0.0
        >>> torch.equal(fused(x), model(x))
        True
    """

    def __init__(
        self,
        model: nn.Module,
        anchors: SemanticAnchorRegularizer | torch.Tensor,
        *,
        beta: float = 1.0,
        metric: str = "l2",
        temperature: float | None = None,
        initialized: torch.Tensor | None = None,
        class_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        for method in ("forward_features", "forward_head"):
            if not callable(getattr(model, method, None)):
                raise TypeError(
                    f"`model` must have {method}() (the package's model contract), "
                    f"got {type(model).__name__}"
                )
        if isinstance(anchors, Regularizer) and not isinstance(anchors, SemanticAnchorRegularizer):
            raise ValueError(
                f"`anchors`: anchor-aware inference needs a SemanticAnchorRegularizer (its trained "
                f"semantic anchors), got {type(anchors).__name__}; pass a (C, D) tensor to fuse "
                "other anchors"
            )
        if isinstance(anchors, SemanticAnchorRegularizer):
            anchors, initialized = anchors.semantic_anchors, anchors.initialized
        if not isinstance(anchors, torch.Tensor):
            raise TypeError(
                "`anchors` must be a SemanticAnchorRegularizer or a (C, D) tensor, "
                f"got {type(anchors).__name__}"
            )
        expected = (getattr(model, "num_classes", None), getattr(model, "feat_dim", None))
        shape_ok = anchors.dim() == 2 and anchors.is_floating_point()
        if shape_ok:
            shape_ok = all(
                e is None or e == s for e, s in zip(expected, anchors.shape, strict=True)
            )
        if not shape_ok:
            raise ValueError(
                f"`anchors` must be a floating-point (C, D) = {expected} tensor (the model's "
                f"num_classes, feat_dim), got shape {tuple(anchors.shape)}, dtype {anchors.dtype}"
            )
        if class_names is None:
            class_names = getattr(model, "class_names", None)
        if initialized is not None:
            if initialized.shape != anchors.shape[:1]:
                raise ValueError(
                    f"`initialized` must have shape ({anchors.shape[0]},), "
                    f"got {tuple(initialized.shape)}"
                )
            check_anchors_initialized(initialized, class_names)
        if not bool(torch.isfinite(anchors).all()):
            raise ValueError("`anchors` must be finite, got NaN or inf values")
        self.model = model
        dtype = torch.promote_types(anchors.dtype, torch.float32)
        self.register_buffer("anchors", anchors.detach().to(dtype).clone())
        self.beta = check_non_negative("beta", beta)
        self.metric = check_choice("metric", metric, ANCHOR_METRICS)
        self.temperature = _check_temperature(temperature)
        self.dense = getattr(model, "dense", None)
        self.num_classes, self.feat_dim = self.anchors.shape

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The wrapped model's ``forward_features``."""
        return self.model.forward_features(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Fused logits at feature resolution.

        Shape:
            features: ``(B, D, h, w)`` or ``(B, D)`` -> ``(B, C, h, w)`` or ``(B, C)``.
        """
        logits = self.model.forward_head(features)  # (B, C, h, w) or (B, C)
        if self.beta == 0:
            return logits
        anchor = anchor_logits(
            features, self.anchors, metric=self.metric, temperature=self.temperature
        )  # (B, C, h, w) or (B, C)
        return logits + self.beta * anchor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Fused logits, upsampled to the input for dense models (``model(x)`` when beta is 0).

        Shape:
            x: ``(B, C_in, H, W)`` -> ``(B, C, H, W)`` (dense) or ``(B, C)``.
        """
        if self.beta == 0:
            return self.model(x)
        logits = self.forward_head(self.forward_features(x))  # (B, C, h, w) or (B, C)
        return upsample_like(logits, x) if logits.dim() == 4 else logits  # (B, C, H, W) or (B, C)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, metric={self.metric!r}, temperature={self.temperature}"
