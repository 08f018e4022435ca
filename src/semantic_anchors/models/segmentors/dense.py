"""``DenseModel``: what every segmentor of the zoo shares, whatever computes its features."""

from __future__ import annotations

from torch import Tensor, nn

from ..layers import upsample_like

__all__ = ["DenseModel"]


class DenseModel(nn.Module):
    """Base of the segmentors: subclasses give ``forward_features`` and ``forward_head``.

    ``forward`` is then the logits of ``forward_head(forward_features(x))`` upsampled bilinearly
    to the input size, the same for a ResNet FCN, an HRNet cascade, a Hugging Face model or a
    prototype head.
    """

    dense = True

    def forward_features(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_head(self, features: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        """Logits upsampled bilinearly to the input size.

        Shape:
            x: ``(B, in_channels, H, W)`` -> ``(B, num_classes, H, W)``.

        Raises:
            ValueError: ``x`` is not a float ``(B, in_channels, H, W)`` tensor.
        """
        return upsample_like(self.forward_head(self.forward_features(x)), x)  # (B, C, H, W)
