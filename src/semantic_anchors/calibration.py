"""Logit calibrations trained on a frozen model: DisAlign's adaptive calibration and MiSLAS' LWS.

Both are small modules ``calibration(features, logits) -> logits`` applied to a model's logits at
feature resolution (before a segmentor's upsampling); :class:`CalibratedModel` wraps a model of the
package's contract so that its ``forward`` / ``forward_train`` give the calibrated logits, which is
what stage-2 training and evaluation use (:mod:`semantic_anchors.train`: ``finetune.calibration``).

* :class:`DisAlignCalibration` (Zhang et al., "Distribution Alignment: A Unified Framework for
  Long-tail Visual Recognition", CVPR 2021): ``s_hat = (1 + sigma(x) * alpha) * s + sigma(x) *
  beta`` with a per-class magnitude ``alpha``, a per-class margin ``beta`` and a confidence
  ``sigma(x)`` in ``(0, 1)`` predicted from the features ``x`` (one per image, or per pixel).
* :class:`LearnableWeightScaling` (Kang et al., ICLR 2020; MiSLAS' stage-2 classifier framework,
  Zhong et al., CVPR 2021): ``s_hat = w * s`` with one learned scale per class.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from semantic_anchors._registry import Registry
from semantic_anchors._validation import check_choice, check_int
from semantic_anchors.functional.resize import upsample_like
from semantic_anchors.models.output import ModelOutput

__all__ = [
    "CALIBRATIONS",
    "CalibratedModel",
    "DisAlignCalibration",
    "LearnableWeightScaling",
    "build_calibration",
]

GATES = ("linear", "conv-bn-relu")


def _check_pair(features: Tensor, logits: Tensor, num_classes: int, feat_dim: int) -> None:
    """``(B, D)`` features with ``(B, C)`` logits, or ``(B, D, h, w)`` with ``(B, C, h, w)``."""
    if logits.dim() not in (2, 4) or logits.shape[1] != num_classes:
        raise ValueError(
            f"`logits` must be (B, C) or (B, C, h, w) with C={num_classes}, got "
            f"{tuple(logits.shape)}"
        )
    expected = (logits.shape[0], feat_dim, *logits.shape[2:])
    if tuple(features.shape) != expected:
        raise ValueError(
            f"`features` must have shape {expected} to match `logits` {tuple(logits.shape)} "
            f"(feat_dim={feat_dim}), got {tuple(features.shape)}"
        )


class DisAlignCalibration(nn.Module):
    """DisAlign's adaptive calibration ``s_hat = (1 + sigma(x) * alpha) * s + sigma(x) * beta``.

    The confidence ``sigma(x) = sigmoid(g(x))`` comes from a tiny layer ``g`` on the features:

    * ``gate="linear"`` (default for vectors): ``g`` is ``nn.Linear(D, 1)`` (a 1x1 ``nn.Conv2d``
      for dense features) with its weight filled with 0.1, as the authors' ``DisAlignLinear``;
    * ``gate="conv-bn-relu"`` (default for dense features): a bias-free 1x1 conv, BN and ReLU
      (``sigma >= 0.5``), as the authors' mmseg ``DisAlignFCNHead`` (an mmcv ``ConvModule``).

    ``alpha`` starts at ``alpha_init`` and ``beta`` at 0. The authors' classification layer starts
    at ``alpha = 1`` (``logit_scale`` ones in ``(1 + sigma * scale) * s``), their segmentation
    head at the identity (``sigma * (scale * s + b) + (1 - sigma) * s`` with ``scale = 1``, i.e.
    ``alpha = scale - 1 = 0``); ``alpha_init=None`` follows them.

    Args:
        num_classes: classes ``C``.
        feat_dim: feature dimension ``D``.
        dense: ``(B, D, h, w)`` features (segmentation) or ``(B, D)``.
        gate: ``"linear"``, ``"conv-bn-relu"`` or ``None`` (the authors' choice by task).
        alpha_init: initial magnitude (``None``: 1 for vectors, 0 for dense).

    Attributes:
        alpha: ``(C,)`` magnitudes; beta: ``(C,)`` margins; gate: the confidence layer.

    Shape:
        - features: ``(B, D)`` or ``(B, D, h, w)``; logits: ``(B, C)`` or ``(B, C, h, w)``.
        - Output: like ``logits``.

    Raises:
        ValueError: bad sizes or gate; per call, features / logits that do not match.

    Example:
        >>> cal = DisAlignCalibration(3, 8, dense=False)
        >>> cal(torch.randn(2, 8), torch.randn(2, 3)).shape
        torch.Size([2, 3])
    """

    def __init__(
        self,
        num_classes: int,
        feat_dim: int,
        *,
        dense: bool,
        gate: str | None = None,
        alpha_init: float | None = None,
    ) -> None:
        super().__init__()
        self.num_classes = check_int("num_classes", num_classes, minimum=1)
        self.feat_dim = check_int("feat_dim", feat_dim, minimum=1)
        self.dense = bool(dense)
        self.gate_kind = check_choice(
            "gate", gate or ("conv-bn-relu" if dense else "linear"), GATES
        )
        if alpha_init is None:
            alpha_init = 0.0 if dense else 1.0
        self.alpha = nn.Parameter(torch.full((num_classes,), float(alpha_init)))
        self.beta = nn.Parameter(torch.zeros(num_classes))
        if self.gate_kind == "linear":
            layer = nn.Conv2d(feat_dim, 1, 1) if dense else nn.Linear(feat_dim, 1)
            nn.init.constant_(layer.weight, 0.1)
            self.gate = layer
        else:
            conv = nn.Conv2d(feat_dim, 1, 1, bias=False) if dense else nn.Linear(feat_dim, 1, False)
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            norm = nn.BatchNorm2d(1) if dense else nn.BatchNorm1d(1)
            self.gate = nn.Sequential(conv, norm, nn.ReLU(inplace=True))

    def confidence(self, features: Tensor) -> Tensor:
        """``sigma(x)``: ``(B, 1)`` or ``(B, 1, h, w)`` in ``(0, 1)``."""
        return torch.sigmoid(self.gate(features))

    def forward(self, features: Tensor, logits: Tensor) -> Tensor:
        _check_pair(features, logits, self.num_classes, self.feat_dim)
        sigma = self.confidence(features).to(logits.dtype)  # (B, 1) or (B, 1, h, w)
        shape = (1, -1) + (1,) * (logits.dim() - 2)
        alpha = self.alpha.to(logits.dtype).view(shape)  # (1, C) or (1, C, 1, 1)
        beta = self.beta.to(logits.dtype).view(shape)
        return (1 + sigma * alpha) * logits + sigma * beta  # (B, C, ...)

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, feat_dim={self.feat_dim}, dense={self.dense}, "
            f"gate={self.gate_kind!r}"
        )


class LearnableWeightScaling(nn.Module):
    """Learnable weight scaling ``s_hat_c = w_c * s_c``, ``w`` initialised to 1.

    Scaling the logits of class ``c`` equals scaling the classifier's weight row (and bias) of
    ``c``, so this is LWS (Kang et al., ICLR 2020) on any classifier; MiSLAS trains it together
    with the classifier in stage 2 (their ``LearnableWeightScaling``).

    Args:
        num_classes: classes ``C``.
        feat_dim, dense: accepted for a uniform builder interface, unused.

    Shape:
        - features: ignored; logits: ``(B, C)`` or ``(B, C, h, w)``. Output: like ``logits``.

    Example:
        >>> lws = LearnableWeightScaling(3)
        >>> logits = torch.randn(2, 3)
        >>> torch.equal(lws(None, logits), logits)
        True
    """

    def __init__(self, num_classes: int, feat_dim: int | None = None, *, dense: bool = False):
        super().__init__()
        self.num_classes = check_int("num_classes", num_classes, minimum=1)
        self.scale = nn.Parameter(torch.ones(num_classes))

    def forward(self, features: Tensor | None, logits: Tensor) -> Tensor:
        if logits.dim() not in (2, 4) or logits.shape[1] != self.num_classes:
            raise ValueError(
                f"`logits` must be (B, C) or (B, C, h, w) with C={self.num_classes}, got "
                f"{tuple(logits.shape)}"
            )
        shape = (1, -1) + (1,) * (logits.dim() - 2)
        return self.scale.to(logits.dtype).view(shape) * logits


CALIBRATIONS: Registry[type[nn.Module]] = Registry(
    "calibration", supplied=("num_classes", "feat_dim", "dense")
)
CALIBRATIONS.add("disalign", DisAlignCalibration)
CALIBRATIONS.add("lws", LearnableWeightScaling)


def build_calibration(
    name: str, num_classes: int, feat_dim: int, *, dense: bool, **options: Any
) -> nn.Module | None:
    """A calibration by name (``"none"`` gives ``None``); options are checked against it.

    Raises:
        ValueError: unknown name (lists the valid ones) or an option it does not take.

    Example:
        >>> build_calibration("disalign", 4, 16, dense=True).gate_kind
        'conv-bn-relu'
    """
    if str(name).lower() == "none":
        if options:
            raise ValueError(f"calibration 'none' takes no options, got {sorted(options)}")
        return None
    CALIBRATIONS.check_options(name, options)
    factory = CALIBRATIONS[name]
    return factory(num_classes, feat_dim, dense=dense, **options)


class CalibratedModel(nn.Module):
    """A model whose logits pass through a calibration: ``calibration(f, forward_head(f))``.

    The calibration sees the features ``f = model.forward_features(x)`` and the logits at feature
    resolution; a dense model's result is then upsampled bilinearly to the input, like the model's
    own ``forward``. It wraps the trained module's parts (not a copy).

    Args:
        model: a model of the package's contract (``forward_features``, ``forward_head``).
        calibration: a module ``calibration(features, logits) -> logits``.

    Shape:
        - x: the model's input. ``forward``: the model's logits shape.

    Example:
        >>> from semantic_anchors.models import create_model
        >>> model = create_model("small_cnn", num_classes=3, in_channels=1).eval()
        >>> wrapped = CalibratedModel(model, LearnableWeightScaling(3)).eval()
        >>> x = torch.randn(2, 1, 28, 28)
        >>> torch.equal(wrapped(x), model(x))
        True
    """

    def __init__(self, model: nn.Module, calibration: nn.Module) -> None:
        super().__init__()
        for method in ("forward_features", "forward_head"):
            if not callable(getattr(model, method, None)):
                raise TypeError(
                    f"`model` must have {method}() (the package's model contract), "
                    f"got {type(model).__name__}"
                )
        self.model, self.calibration = model, calibration
        self.dense = bool(getattr(model, "dense", False))
        self.num_classes, self.feat_dim = model.num_classes, model.feat_dim
        self.aux_loss_weight = 0.0  # the calibrated logits have no auxiliary counterpart

    @property
    def classifier(self) -> nn.Module:
        """The wrapped model's classifier."""
        return self.model.classifier

    def forward_features(self, x: Tensor) -> Tensor:
        return self.model.forward_features(x)

    def forward_head(self, features: Tensor) -> Tensor:
        """Calibrated logits at feature resolution."""
        return self.calibration(features, self.model.forward_head(features))

    def forward(self, x: Tensor) -> Tensor:
        logits = self.forward_head(self.forward_features(x))  # (B, C) or (B, C, h, w)
        return upsample_like(logits, x) if self.dense else logits

    def forward_train(self, x: Tensor) -> ModelOutput:
        """Features and calibrated (upsampled) logits; no auxiliary logits."""
        features = self.forward_features(x)
        logits = self.forward_head(features)
        return ModelOutput(features, upsample_like(logits, x) if self.dense else logits, None)
