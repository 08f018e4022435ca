"""``DenseModel``: what every segmentor of the zoo shares, whatever computes its features."""

from __future__ import annotations

from torch import Tensor, nn

from ..layers import upsample_like
from ..output import ModelOutput

__all__ = ["DenseModel"]


class DenseModel(nn.Module):
    """Base of the segmentors: subclasses give ``forward_features``, ``forward_head`` and
    ``_train_pass``.

    ``forward`` is then the logits of ``forward_head(forward_features(x))`` upsampled bilinearly
    to the input size, and ``forward_train`` the outputs of ``_train_pass`` with the logits
    upsampled the same way: the same for a ResNet FCN, an HRNet cascade, a Hugging Face model or
    a prototype head.
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

    def _train_pass(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """Features, logits and auxiliary logits (``None`` without an auxiliary head) at the
        model's own resolutions, from one backbone pass."""
        raise NotImplementedError  # pragma: no cover - abstract

    def forward_train(self, x: Tensor) -> ModelOutput:
        """Features, upsampled logits and upsampled auxiliary logits from one backbone pass.

        Shape:
            x: ``(B, in_channels, H, W)`` -> features ``(B, D, h, w)``, logits and aux_logits
            ``(B, num_classes, H, W)`` (aux_logits ``None`` without an auxiliary head).

        Raises:
            ValueError: ``x`` is not a float ``(B, in_channels, H, W)`` tensor.
        """
        features, logits, aux_logits = self._train_pass(x)  # (B, D, h, w), (B, C, h, w), ...
        logits = upsample_like(logits, x)  # (B, C, H, W)
        if aux_logits is not None:
            aux_logits = upsample_like(aux_logits, x)  # (B, C, H, W)
        return ModelOutput(features, logits, aux_logits)
