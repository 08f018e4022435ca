"""DeepLabV3 ASPP head (mmseg ``ASPPHead``): image pooling + parallel dilated convolutions."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from semantic_anchors._model_checks import check_int

from ..layers import ConvBNReLU, init_conv_bn
from .base import DecodeHead

__all__ = ["ASPPHead"]


class ASPPHead(DecodeHead):
    """Atrous spatial pyramid pooling, then a 3x3 ``bottleneck``, dropout and ``conv_seg``.

    Branches: global average pooling + 1x1 conv (broadcast back bilinearly), a 1x1 conv for
    dilation 1, and a 3x3 conv for every other dilation; all conv-BN-ReLU with ``channels``
    outputs. The DeepLabV3 baselines use dilations ``(1, 12, 24, 36)`` at output stride 8 (the
    paper's ``(1, 6, 12, 18)`` at 16). Key names follow mmseg (``image_pool.1.conv.weight``,
    ``aspp_modules.1.conv.weight``, ``bottleneck.conv.weight``, ``conv_seg.weight``).

    Note: the image-pooling branch has BatchNorm on ``(B, channels, 1, 1)``, so training needs a
    batch of at least 2 (as in mmseg).

    Args:
        in_channels: channels of the input stage.
        channels: channels of every branch and of the head's features.
        num_classes: classes.
        dilations: one branch per dilation (1 gives a 1x1 convolution).
        dropout: ``Dropout2d`` probability before ``conv_seg``.

    Shape:
        x: ``(B, in_channels, h, w)``; features ``(B, channels, h, w)``;
        logits ``(B, num_classes, h, w)``.

    Raises:
        ValueError / TypeError: bad sizes or dilations.

    Example:
        >>> import torch
        >>> head = ASPPHead(64, 32, num_classes=5, dilations=(1, 2, 4))
        >>> head(torch.randn(2, 64, 8, 8)).shape
        torch.Size([2, 5, 8, 8])
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        num_classes: int,
        *,
        dilations: Sequence[int] = (1, 12, 24, 36),
        dropout: float = 0.1,
    ) -> None:
        super().__init__(in_channels, channels, num_classes, dropout)
        if not isinstance(dilations, Sequence) or len(dilations) == 0:
            raise ValueError(f"dilations: expected a non-empty sequence of ints, got {dilations!r}")
        for dilation in dilations:
            check_int("dilations", dilation)
        self.dilations = tuple(dilations)
        self.image_pool = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), ConvBNReLU(in_channels, channels, 1)
        )
        self.aspp_modules = nn.ModuleList(
            ConvBNReLU(in_channels, channels, 1 if d == 1 else 3, dilation=d) for d in dilations
        )
        self.bottleneck = ConvBNReLU((len(dilations) + 1) * channels, channels, 3)
        self.apply(init_conv_bn)
        self._build_classifier()

    def forward_features(self, x: Tensor) -> Tensor:
        """Head features right before dropout and ``conv_seg``.

        Shape:
            x: ``(B, in_channels, h, w)`` -> ``(B, channels, h, w)``.
        """
        pooled = self.image_pool(x)  # (B, channels, 1, 1)
        pooled = F.interpolate(pooled, size=x.shape[-2:], mode="bilinear", align_corners=False)
        branches = [pooled] + [
            branch(x) for branch in self.aspp_modules
        ]  # each (B, channels, h, w)
        return self.bottleneck(torch.cat(branches, dim=1))  # (B, channels, h, w)
