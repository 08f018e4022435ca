"""What the wrapped ``transformers`` segmentors share: the dense model contract over ``hf_model``.

:class:`HFDenseSegmentor` implements ``forward_features`` / ``forward_head`` / ``forward_train``
and ``classifier`` (``hf_model.decode_head.classifier``); each adapter (SegFormer in
:mod:`.segformer`, UperNet in :mod:`.upernet`) says which tensor is the feature map.
"""

from __future__ import annotations

from torch import Tensor, nn

from semantic_anchors._model_checks import check_features, check_images

from ..segmentors.dense import DenseModel

__all__ = ["HFDenseSegmentor"]


class HFDenseSegmentor(DenseModel):
    """Shared contract of the wrapped segmentors; subclasses implement ``_features_and_aux``."""

    dense = True

    def __init__(
        self, hf_model: nn.Module, *, in_channels: int, feat_dim: int, stride: int
    ) -> None:
        super().__init__()
        self.hf_model = hf_model
        self.num_classes = hf_model.config.num_labels
        self.in_channels = in_channels
        self.feat_dim = feat_dim
        self.output_stride = stride
        self.aux_loss_weight = 0.0

    @property
    def classifier(self) -> nn.Conv2d:
        """The HF model's own final 1x1 convolution, ``hf_model.decode_head.classifier``."""
        return self.hf_model.decode_head.classifier

    def _features_and_aux(self, x: Tensor, *, aux: bool) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError

    def forward_features(self, x: Tensor) -> Tensor:
        """Pre-classifier features at output stride (see the subclass for which tensor).

        Shape:
            x: ``(B, in_channels, H, W)`` -> ``(B, feat_dim, H / output_stride, W / output_stride)``.

        Raises:
            ValueError: ``x`` is not a float ``(B, in_channels, H, W)`` tensor.
        """
        check_images(x, self.in_channels)
        return self._features_and_aux(x, aux=False)[0]  # (B, D, h, w)

    def forward_head(self, features: Tensor) -> Tensor:
        """Logits at feature resolution: the HF head's dropout (if any) then its classifier.

        Shape:
            features: ``(B, feat_dim, h, w)`` -> ``(B, num_classes, h, w)``.

        Raises:
            ValueError: ``features`` is not ``(B, feat_dim, h, w)``.
        """
        check_features(features, self.feat_dim, dense=True)
        head = self.hf_model.decode_head
        dropout = getattr(head, "dropout", None)
        if dropout is not None:
            features = dropout(features)
        return head.classifier(features)  # (B, C, h, w)

    def _train_pass(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        check_images(x, self.in_channels)
        features, aux_logits = self._features_and_aux(x, aux=True)  # (B, D, h, w)
        return features, self.forward_head(features), aux_logits
