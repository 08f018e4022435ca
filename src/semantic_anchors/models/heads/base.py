"""``DecodeHead``: what every segmentation head shares (dropout + 1x1 classifier ``conv_seg``)."""

from __future__ import annotations

from torch import Tensor, nn

from semantic_anchors._model_checks import check_int, check_probability

__all__ = ["DecodeHead"]


class DecodeHead(nn.Module):
    """Base of the segmentation heads: ``forward_features`` then dropout and ``conv_seg``.

    As in mmseg's ``BaseDecodeHead``: ``Dropout2d(dropout)`` then a 1x1 ``conv_seg`` initialised
    ``N(0, 0.01)`` with zero bias. Subclasses implement :meth:`forward_features`.

    Args:
        in_channels: channels of the backbone stage the head reads.
        channels: channels of the head's features (``feat_dim`` of a segmentor).
        num_classes: classes of ``conv_seg``.
        dropout: ``Dropout2d`` probability before ``conv_seg`` (0 disables it).

    Shape:
        x: ``(B, in_channels, h, w)``; features ``(B, channels, h, w)``;
        logits ``(B, num_classes, h, w)``.

    Raises:
        ValueError / TypeError: bad ``in_channels``, ``channels``, ``num_classes`` or ``dropout``.
    """

    def __init__(self, in_channels: int, channels: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels)
        self.channels = check_int("channels", channels)
        self.num_classes = check_int("num_classes", num_classes)
        self.dropout_ratio = check_probability("dropout", dropout)

    def _build_classifier(self) -> None:
        """Adds ``dropout`` and ``conv_seg``; call it after the head's own layers."""
        self.dropout = nn.Dropout2d(self.dropout_ratio) if self.dropout_ratio > 0 else nn.Identity()
        self.conv_seg = nn.Conv2d(self.channels, self.num_classes, 1)
        nn.init.normal_(self.conv_seg.weight, mean=0.0, std=0.01)
        nn.init.zeros_(self.conv_seg.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        """Head features right before dropout and ``conv_seg``.

        Shape:
            x: ``(B, in_channels, h, w)`` -> ``(B, channels, h, w)``.
        """
        raise NotImplementedError

    def forward_head(self, features: Tensor) -> Tensor:
        """Dropout (training only) then ``conv_seg``.

        Shape:
            features: ``(B, channels, h, w)`` -> ``(B, num_classes, h, w)``.
        """
        return self.conv_seg(self.dropout(features))  # (B, C, h, w)

    def forward(self, x: Tensor) -> Tensor:
        """Logits at the input's resolution.

        Shape:
            x: ``(B, in_channels, h, w)`` -> ``(B, num_classes, h, w)``.
        """
        return self.forward_head(self.forward_features(x))
