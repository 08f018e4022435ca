"""``Segmentor``: backbone + decode head (+ auxiliary head), with the model contract.

``forward_features`` gives the decode head's features at output stride (the input of SAR),
``forward_head`` the logits at that resolution, ``forward`` the logits upsampled to the input,
``forward_train`` all of them (and the auxiliary logits) from a single backbone pass.
"""

from __future__ import annotations

from torch import Tensor, nn

from semantic_anchors._model_checks import check_features, check_images

from ..classifier import ClassificationModel
from ..heads.base import DecodeHead
from .dense import DenseModel

__all__ = ["Segmentor"]


class Segmentor(DenseModel):
    """Encoder-decoder segmentation model.

    Args:
        backbone: a headless classification model (``num_classes=0``) with ``forward_stages``,
            ``stage_channels``, ``in_channels`` and ``output_stride``.
        decode_head: the main head, reading stage ``decode_index``.
        auxiliary_head: optional head on stage ``aux_index`` (training-time deep supervision).
        aux_loss_weight: weight of the auxiliary loss, applied by the training code; the attribute
            is 0.0 without an auxiliary head.
        decode_index: backbone stage of the main head (default: the last one).
        aux_index: backbone stage of the auxiliary head (default: the one before the last).

    Attributes:
        num_classes: classes.
        feat_dim: ``decode_head.channels`` (D of the features).
        dense: ``True``.
        output_stride: input size / feature size.
        classifier: ``decode_head.conv_seg``, the 1x1 ``nn.Conv2d`` mapping features to logits.
        aux_loss_weight: ``aux_loss_weight`` or 0.0.

    Shape:
        x: ``(B, in_channels, H, W)``; features ``(B, D, H / output_stride, W / output_stride)``;
        ``forward`` logits ``(B, num_classes, H, W)``.

    Raises:
        ValueError: a head whose ``in_channels`` differ from its backbone stage, heads with
            different ``num_classes``, or a negative ``aux_loss_weight``.
        TypeError: a backbone without ``forward_stages``.

    Example:
        >>> import torch
        >>> from semantic_anchors.models import FCNHead, SmallCNN
        >>> backbone = SmallCNN(0, output_stride=8)
        >>> model = Segmentor(backbone, FCNHead(128, 64, num_classes=4)).eval()
        >>> out = model.forward_train(torch.randn(2, 3, 32, 32))
        >>> out.features.shape, out.logits.shape, out.aux_logits
        (torch.Size([2, 64, 4, 4]), torch.Size([2, 4, 32, 32]), None)
    """

    dense = True

    def __init__(
        self,
        backbone: ClassificationModel,
        decode_head: DecodeHead,
        auxiliary_head: DecodeHead | None = None,
        *,
        aux_loss_weight: float = 0.4,
        decode_index: int = -1,
        aux_index: int = -2,
    ) -> None:
        super().__init__()
        if not hasattr(backbone, "forward_stages"):
            raise TypeError(
                f"backbone: expected a model with forward_stages, got {type(backbone).__name__}"
            )
        heads = [
            ("decode_head", decode_head, decode_index),
            ("auxiliary_head", auxiliary_head, aux_index),
        ]
        for name, head, index in heads:
            if head is None:
                continue
            stage_channels = backbone.stage_channels[index]
            if head.in_channels != stage_channels:
                raise ValueError(
                    f"{name}: expected in_channels={stage_channels} (backbone stage {index}), "
                    f"got {head.in_channels}"
                )
        if auxiliary_head is not None and auxiliary_head.num_classes != decode_head.num_classes:
            raise ValueError(
                f"auxiliary_head: expected num_classes={decode_head.num_classes}, "
                f"got {auxiliary_head.num_classes}"
            )
        if not aux_loss_weight >= 0:
            raise ValueError(f"aux_loss_weight: expected a float >= 0, got {aux_loss_weight}")
        self.backbone = backbone
        self.decode_head = decode_head
        self.auxiliary_head = auxiliary_head
        self.decode_index, self.aux_index = decode_index, aux_index
        self.num_classes = decode_head.num_classes
        self.feat_dim = decode_head.channels
        self.in_channels = backbone.in_channels
        self.output_stride = backbone.output_stride
        self.aux_loss_weight = float(aux_loss_weight) if auxiliary_head is not None else 0.0

    @property
    def classifier(self) -> nn.Conv2d:
        """The final 1x1 convolution ``decode_head.conv_seg``."""
        return self.decode_head.conv_seg

    def forward_features(self, x: Tensor) -> Tensor:
        """Decode-head features right before dropout and classifier.

        Shape:
            x: ``(B, in_channels, H, W)`` -> ``(B, feat_dim, H / output_stride, W / output_stride)``.

        Raises:
            ValueError: ``x`` is not a float ``(B, in_channels, H, W)`` tensor.
        """
        check_images(x, self.in_channels)
        stages = self.backbone.forward_stages(x)
        return self.decode_head.forward_features(stages[self.decode_index])  # (B, D, h, w)

    def forward_head(self, features: Tensor) -> Tensor:
        """Logits at feature resolution: dropout (training only) then ``classifier``.

        Shape:
            features: ``(B, feat_dim, h, w)`` -> ``(B, num_classes, h, w)``.

        Raises:
            ValueError: ``features`` is not ``(B, feat_dim, h, w)``.
        """
        check_features(features, self.feat_dim, dense=True)
        return self.decode_head.forward_head(features)  # (B, C, h, w)

    def _train_pass(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        check_images(x, self.in_channels)
        stages = self.backbone.forward_stages(x)
        features = self.decode_head.forward_features(stages[self.decode_index])  # (B, D, h, w)
        logits = self.decode_head.forward_head(features)  # (B, C, h, w)
        aux_logits = None
        if self.auxiliary_head is not None:  # after the decode head's dropout, as always
            aux_logits = self.auxiliary_head(stages[self.aux_index])  # (B, C, h', w')
        return features, logits, aux_logits
