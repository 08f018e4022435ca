"""FCN head on all backbone levels resized and concatenated (mmseg's ``resize_concat``).

The head of mmseg's ``fcn_hr18`` / ``fcn_hr48`` and the first (auxiliary) stage of its OCRNet:
the four HRNet branches are upsampled to the stride-4 one and concatenated (270 channels for
W18, 720 for W48), then one 1x1 conv-BN-ReLU of as many channels gives the features, and the 1x1
``conv_seg`` the logits. There is no dropout (the configs' ``dropout_ratio=-1``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from semantic_anchors._model_checks import check_int

from ..layers import ConvBNReLU, init_conv_bn
from .base import DecodeHead

__all__ = ["ResizeConcatFCNHead", "check_channels", "check_levels", "resize_concat"]


def resize_concat(levels: Sequence[Tensor]) -> Tensor:
    """Every level upsampled to the first one's size (bilinear, no corner alignment), concatenated.

    Shape:
        levels: ``[(B, C_i, h_i, w_i)]`` -> ``(B, sum C_i, h_0, w_0)``.
    """
    size = levels[0].shape[-2:]
    resized = [
        x
        if x.shape[-2:] == size
        else F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        for x in levels
    ]
    return torch.cat(resized, dim=1)  # (B, sum C_i, h_0, w_0)


def check_channels(name: str, channels: Sequence[int]) -> tuple[int, ...]:
    """Returns ``channels`` as a non-empty tuple of positive ints.

    Raises:
        TypeError / ValueError: an empty sequence or an entry that is not an int >= 1.
    """
    if isinstance(channels, int) or not isinstance(channels, Sequence) or not channels:
        raise TypeError(f"{name}: expected a non-empty sequence of ints, got {channels!r}")
    return tuple(check_int(f"{name}[{i}]", c) for i, c in enumerate(channels))


def check_levels(levels: Sequence[Tensor], channels: tuple[int, ...]) -> None:
    """Checks that ``levels`` are ``len(channels)`` maps ``(B, channels[i], h_i, w_i)``.

    Raises:
        ValueError: another number of levels, or a level with other channels.
    """
    if len(levels) != len(channels):
        raise ValueError(f"levels: expected {len(channels)} feature maps, got {len(levels)}")
    got = tuple(x.shape[1] if x.ndim == 4 else None for x in levels)
    if got != channels:
        raise ValueError(f"levels: expected (B, C, h, w) maps with C = {channels}, got {got}")


class ResizeConcatFCNHead(DecodeHead):
    """Resize-concat of all levels, ``num_convs`` conv-BN-ReLU, then ``conv_seg``.

    Key names follow mmseg's ``FCNHead`` (``convs.0.conv.weight``, ``convs.0.bn.*``,
    ``conv_seg.*``).

    Args:
        in_channels: channels of each level, e.g. ``(48, 96, 192, 384)``.
        channels: head channels (its features); mmseg's HRNet configs use ``sum(in_channels)``.
        num_classes: classes.
        kernel_size: kernel of the convolutions (1 in the HRNet configs).
        num_convs: convolutions (1 in the HRNet configs).
        dropout: ``Dropout2d`` probability before ``conv_seg`` (0, i.e. none, in the configs).

    Attributes:
        in_channels: ``sum(level_channels)``.
        level_channels: the ``in_channels`` argument.

    Shape:
        levels: ``[(B, in_channels[i], h_i, w_i)]``; features ``(B, channels, h_0, w_0)``;
        logits ``(B, num_classes, h_0, w_0)``.

    Raises:
        ValueError / TypeError: bad sizes, or an even ``kernel_size``.

    Example:
        >>> import torch
        >>> head = ResizeConcatFCNHead((8, 16), 24, num_classes=3)
        >>> head([torch.randn(2, 8, 16, 16), torch.randn(2, 16, 8, 8)]).shape
        torch.Size([2, 3, 16, 16])
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        channels: int,
        num_classes: int,
        *,
        kernel_size: int = 1,
        num_convs: int = 1,
        dropout: float = 0.0,
    ) -> None:
        self.level_channels = check_channels("in_channels", in_channels)
        super().__init__(sum(self.level_channels), channels, num_classes, dropout)
        check_int("num_convs", num_convs)
        if check_int("kernel_size", kernel_size) % 2 == 0:
            raise ValueError(f"kernel_size: expected an odd int, got {kernel_size}")
        self.convs = nn.Sequential(
            *(
                ConvBNReLU(self.in_channels if i == 0 else channels, channels, kernel_size)
                for i in range(num_convs)
            )
        )
        self.apply(init_conv_bn)
        self._build_classifier()

    def forward_features(self, levels: Sequence[Tensor]) -> Tensor:  # type: ignore[override]
        """Head features right before dropout and ``conv_seg``.

        Shape:
            levels: ``[(B, in_channels[i], h_i, w_i)]`` -> ``(B, channels, h_0, w_0)``.

        Raises:
            ValueError: levels of other number or channels.
        """
        check_levels(levels, self.level_channels)
        return self.convs(resize_concat(levels))  # (B, channels, h_0, w_0)
