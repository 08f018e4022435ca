"""OCR head (Object-Contextual Representations, Yuan et al. 2020) with mmseg ``OCRHead`` keys.

The second stage of OCRNet: a coarse segmentation (the logits of the FCN head before it) soft-
assigns pixels to ``K`` object regions; each region's representation is the probability-weighted
mean of the pixel features; every pixel then attends over the ``K`` regions, and its features are
fused with that object context. The fused map (``channels``, 512) is the pre-classifier feature
that SAR regularizes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from semantic_anchors._model_checks import check_int

from ..layers import ConvBNReLU, init_conv_bn
from .base import DecodeHead
from .fcn_concat import check_channels, check_levels, resize_concat

__all__ = ["OCRHead", "ObjectAttentionBlock", "gather_object_regions"]


def gather_object_regions(features: Tensor, region_logits: Tensor) -> Tensor:
    """Region representations: pixel features averaged with softmax-over-pixels weights.

    mmseg's ``SpatialGatherModule`` with ``scale=1``.

    Shape:
        features: ``(B, D, h, w)``, region_logits: ``(B, K, h, w)`` -> ``(B, D, K, 1)``.
    """
    weights = F.softmax(region_logits.flatten(2), dim=2)  # (B, K, hw)
    pixels = features.flatten(2).transpose(1, 2)  # (B, hw, D)
    regions = torch.matmul(weights, pixels)  # (B, K, D)
    return regions.transpose(1, 2).unsqueeze(3)  # (B, D, K, 1)


def _project(in_channels: int, channels: int, num_convs: int) -> nn.Module:
    """``num_convs`` 1x1 conv-BN-ReLU (a bare module for one, as mmseg names it)."""
    convs = [ConvBNReLU(in_channels if i == 0 else channels, channels, 1) for i in range(num_convs)]
    return convs[0] if num_convs == 1 else nn.Sequential(*convs)


class ObjectAttentionBlock(nn.Module):
    """Pixel-to-region attention, then a 1x1 fusion of ``[context, pixels]``.

    Queries come from the pixels, keys and values from the regions (two / one / one 1x1
    conv-BN-ReLU projections to ``channels``), scaled by ``channels ** -0.5``; ``out_project``
    maps the context back to ``in_channels`` and ``bottleneck`` fuses it with the pixels.

    Args:
        in_channels: channels of the pixel and region features (D).
        channels: attention channels (mmseg's ``ocr_channels``, 256).

    Shape:
        pixels: ``(B, D, h, w)``, regions: ``(B, D, K, 1)`` -> ``(B, D, h, w)``.
    """

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.key_project = _project(in_channels, channels, 2)
        self.query_project = _project(in_channels, channels, 2)
        self.value_project = _project(in_channels, channels, 1)
        self.out_project = _project(channels, in_channels, 1)
        self.bottleneck = ConvBNReLU(2 * in_channels, in_channels, 1)

    def forward(self, pixels: Tensor, regions: Tensor) -> Tensor:
        batch, _, height, width = pixels.shape
        query = self.query_project(pixels).flatten(2).transpose(1, 2)  # (B, hw, c)
        key = self.key_project(regions).flatten(2)  # (B, c, K)
        value = self.value_project(regions).flatten(2).transpose(1, 2)  # (B, K, c)
        attention = F.softmax(self.channels**-0.5 * torch.matmul(query, key), dim=-1)  # (B, hw, K)
        context = torch.matmul(attention, value).transpose(1, 2)  # (B, c, hw)
        context = self.out_project(context.reshape(batch, -1, height, width))  # (B, D, h, w)
        return self.bottleneck(torch.cat([context, pixels], dim=1))  # (B, D, h, w)


class OCRHead(DecodeHead):
    """OCR head on the resized and concatenated levels, guided by a previous head's logits.

    ``bottleneck`` (3x3 conv-BN-ReLU, ``sum(in_channels) -> channels``) gives the pixel
    features; :func:`gather_object_regions` with the previous logits the ``num_classes`` region
    features; :class:`ObjectAttentionBlock` the object-contextual features; ``conv_seg`` the
    logits. Keys follow mmseg's ``OCRHead`` (``bottleneck.conv.weight``,
    ``object_context_block.key_project.0.conv.weight``, ..., ``conv_seg.*``).

    Args:
        in_channels: channels of each level, e.g. ``(48, 96, 192, 384)``.
        channels: head channels = feature dimension (512 in mmseg's configs).
        num_classes: classes (also the number of object regions).
        ocr_channels: attention channels (256).
        dropout: ``Dropout2d`` before ``conv_seg`` (0, none, in the configs).

    Attributes:
        in_channels: ``sum(level_channels)``.
        level_channels: the ``in_channels`` argument.

    Shape:
        levels: ``[(B, in_channels[i], h_i, w_i)]``, previous logits
        ``(B, num_classes, h_0, w_0)``; features ``(B, channels, h_0, w_0)``; logits
        ``(B, num_classes, h_0, w_0)``.

    Raises:
        ValueError / TypeError: bad sizes.

    Example:
        >>> import torch
        >>> head = OCRHead((8, 16), 32, num_classes=3, ocr_channels=16)
        >>> levels = [torch.randn(2, 8, 16, 16), torch.randn(2, 16, 8, 8)]
        >>> head(levels, torch.randn(2, 3, 16, 16)).shape
        torch.Size([2, 3, 16, 16])
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        channels: int,
        num_classes: int,
        *,
        ocr_channels: int = 256,
        dropout: float = 0.0,
    ) -> None:
        self.level_channels = check_channels("in_channels", in_channels)
        super().__init__(sum(self.level_channels), channels, num_classes, dropout)
        self.ocr_channels = check_int("ocr_channels", ocr_channels)
        self.object_context_block = ObjectAttentionBlock(channels, ocr_channels)
        self.bottleneck = ConvBNReLU(self.in_channels, channels, 3)
        self.apply(init_conv_bn)
        self._build_classifier()

    def forward_features(  # type: ignore[override]
        self, levels: Sequence[Tensor], previous_logits: Tensor
    ) -> Tensor:
        """Object-contextual features right before dropout and ``conv_seg``.

        Shape:
            levels: ``[(B, in_channels[i], h_i, w_i)]``, previous_logits
            ``(B, num_classes, h_0, w_0)`` -> ``(B, channels, h_0, w_0)``.

        Raises:
            ValueError: levels of other number or channels, or previous logits of another shape.
        """
        check_levels(levels, self.level_channels)
        expected = (levels[0].shape[0], self.num_classes, *levels[0].shape[-2:])
        if tuple(previous_logits.shape) != expected:
            raise ValueError(
                f"previous_logits: expected shape {expected}, got {tuple(previous_logits.shape)}"
            )
        pixels = self.bottleneck(resize_concat(levels))  # (B, D, h, w)
        regions = gather_object_regions(pixels, previous_logits)  # (B, D, K, 1)
        return self.object_context_block(pixels, regions)  # (B, D, h, w)

    def forward(  # type: ignore[override]
        self, levels: Sequence[Tensor], previous_logits: Tensor
    ) -> Tensor:
        """Logits at the first level's resolution.

        Shape:
            levels, previous_logits as in :meth:`forward_features` ->
            ``(B, num_classes, h_0, w_0)``.
        """
        return self.forward_head(self.forward_features(levels, previous_logits))
