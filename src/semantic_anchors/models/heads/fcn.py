"""FCN head (mmseg ``FCNHead``): 3x3 convolutions, optional concatenation with the input."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from semantic_anchors._model_checks import check_int

from ..layers import ConvBNReLU, init_conv_bn
from .base import DecodeHead

__all__ = ["FCNHead"]


class FCNHead(DecodeHead):
    """``num_convs`` 3x3 conv-BN-ReLU, then (``concat_input``) a 3x3 ``conv_cat`` on
    ``[input, output]``, dropout and the 1x1 classifier ``conv_seg``.

    The main head of the FCN baselines is ``FCNHead(2048, 512, C)`` (two convolutions,
    ``concat_input=True``); the auxiliary head is ``FCNHead(1024, 256, C, num_convs=1,
    concat_input=False)``. Key names follow mmseg (``convs.0.conv.weight``, ``conv_cat.bn.weight``,
    ``conv_seg.weight``).

    Args:
        in_channels: channels of the input stage.
        channels: channels of the head (its features).
        num_classes: classes.
        num_convs: 3x3 convolutions before ``conv_cat``; 0 needs ``in_channels == channels``.
        concat_input: concatenate the input with the convolutions' output, then ``conv_cat``.
        dilation: dilation of the convolutions in ``convs``.
        dropout: ``Dropout2d`` probability before ``conv_seg``.

    Shape:
        x: ``(B, in_channels, h, w)``; features ``(B, channels, h, w)``;
        logits ``(B, num_classes, h, w)``.

    Raises:
        ValueError / TypeError: bad sizes, or ``num_convs=0`` with ``in_channels != channels``.

    Example:
        >>> import torch
        >>> head = FCNHead(64, 32, num_classes=5)
        >>> head(torch.randn(2, 64, 8, 8)).shape
        torch.Size([2, 5, 8, 8])
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        num_classes: int,
        *,
        num_convs: int = 2,
        concat_input: bool = True,
        dilation: int = 1,
        dropout: float = 0.1,
    ) -> None:
        super().__init__(in_channels, channels, num_classes, dropout)
        check_int("num_convs", num_convs, minimum=0)
        check_int("dilation", dilation)
        if num_convs == 0 and in_channels != channels:
            raise ValueError(
                f"channels: with num_convs=0 expected channels == in_channels ({in_channels}), "
                f"got {channels}"
            )
        self.concat_input = bool(concat_input)
        convs = [
            ConvBNReLU(in_channels if i == 0 else channels, channels, 3, dilation=dilation)
            for i in range(num_convs)
        ]
        self.convs = nn.Sequential(*convs) if convs else nn.Identity()
        if self.concat_input:
            self.conv_cat = ConvBNReLU(in_channels + channels, channels, 3)
        self.apply(init_conv_bn)
        self._build_classifier()

    def forward_features(self, x: Tensor) -> Tensor:
        """Head features right before dropout and ``conv_seg``.

        Shape:
            x: ``(B, in_channels, h, w)`` -> ``(B, channels, h, w)``.
        """
        output = self.convs(x)  # (B, channels, h, w)
        if self.concat_input:
            output = self.conv_cat(torch.cat([x, output], dim=1))  # (B, channels, h, w)
        return output
