"""``MultiLevelSegmentor``: a backbone whose heads read all its levels (HRNet FCN / OCRNet).

mmseg's ``EncoderDecoder`` with a ``resize_concat`` head (FCN-HR), or its ``CascadeEncoderDecoder``
(OCRNet): ``decode_head`` is then a list of two heads, the second refining the first's logits.
Module names are mmseg's (``backbone.*``, ``decode_head.*`` or ``decode_head.0.*`` /
``decode_head.1.*``), so its checkpoints load with ``load_state_dict``. The model contract is that
of :class:`~semantic_anchors.models.Segmentor`; in a cascade the first head's logits are the
auxiliary logits (mmseg weighs their loss 0.4).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from semantic_anchors._model_checks import check_features, check_images

from ..classifier import ClassificationModel
from ..heads.base import DecodeHead
from .dense import DenseModel

__all__ = ["MultiLevelSegmentor"]


class MultiLevelSegmentor(DenseModel):
    """Backbone + one head on all levels, or a cascade of two (coarse head, refining head).

    Args:
        backbone: headless backbone with ``forward_stages``, ``stage_channels``,
            ``stage_strides`` and ``in_channels`` (e.g. :class:`~.backbones.hrnet.HRNet`).
        decode_head: a head whose ``forward_features(levels)`` reads the list of all levels
            (:class:`~.heads.fcn_concat.ResizeConcatFCNHead`), or a sequence ``[coarse, refine]``
            whose second head's ``forward_features(levels, coarse_logits)`` refines the first
            (:class:`~.heads.ocr.OCRHead`).
        aux_loss_weight: weight of the coarse head's loss in a cascade (0.4 as mmseg's OCRNet);
            the attribute is 0.0 with a single head.

    Attributes:
        num_classes: classes.
        feat_dim: ``channels`` of the (last) head.
        dense: ``True``.
        output_stride: stride of the first level (4 for HRNet).
        classifier: the (last) head's ``conv_seg``.
        aux_loss_weight: ``aux_loss_weight`` in a cascade, else 0.0.

    Shape:
        x: ``(B, in_channels, H, W)``; features ``(B, D, H / output_stride, W / output_stride)``;
        ``forward`` logits ``(B, num_classes, H, W)``.

    Raises:
        ValueError: heads whose level channels differ from the backbone's, heads with different
            ``num_classes``, a cascade of other than two heads, or a negative ``aux_loss_weight``.
        TypeError: a backbone without ``forward_stages``.

    Example:
        >>> import torch
        >>> from semantic_anchors.models.segmentors.hrnet import build_hrnet_segmentor
        >>> model = build_hrnet_segmentor(8, "ocr", num_classes=3).eval()  # a narrow HRNet
        >>> out = model.forward_train(torch.randn(1, 3, 64, 64))
        >>> out.features.shape, out.logits.shape, out.aux_logits.shape
        (torch.Size([1, 512, 16, 16]), torch.Size([1, 3, 64, 64]), torch.Size([1, 3, 64, 64]))
    """

    dense = True

    def __init__(
        self,
        backbone: ClassificationModel,
        decode_head: DecodeHead | Sequence[DecodeHead],
        *,
        aux_loss_weight: float = 0.4,
    ) -> None:
        super().__init__()
        if not hasattr(backbone, "forward_stages"):
            raise TypeError(
                f"backbone: expected a model with forward_stages, got {type(backbone).__name__}"
            )
        many = isinstance(decode_head, (Sequence, nn.ModuleList))
        heads = list(decode_head) if many else [decode_head]
        if len(heads) not in (1, 2):
            raise ValueError(f"decode_head: expected one head or two (a cascade), got {len(heads)}")
        levels = tuple(backbone.stage_channels)
        for index, head in enumerate(heads):
            if tuple(head.level_channels) != levels:
                raise ValueError(
                    f"decode_head[{index}]: expected in_channels={levels} (the backbone's "
                    f"levels), got {tuple(head.level_channels)}"
                )
            if head.num_classes != heads[0].num_classes:
                raise ValueError(
                    f"decode_head[{index}]: expected num_classes={heads[0].num_classes}, "
                    f"got {head.num_classes}"
                )
        if not aux_loss_weight >= 0:
            raise ValueError(f"aux_loss_weight: expected a float >= 0, got {aux_loss_weight}")
        self.backbone = backbone
        self.cascade = len(heads) == 2
        self.decode_head = nn.ModuleList(heads) if self.cascade else heads[0]
        self.auxiliary_head = None
        self.num_classes = heads[0].num_classes
        self.feat_dim = heads[-1].channels
        self.in_channels = backbone.in_channels
        self.output_stride = backbone.stage_strides[0]
        self.aux_loss_weight = float(aux_loss_weight) if self.cascade else 0.0

    @property
    def _last_head(self) -> DecodeHead:
        return self.decode_head[-1] if self.cascade else self.decode_head

    @property
    def classifier(self) -> nn.Conv2d:
        """The final 1x1 convolution, the (last) head's ``conv_seg``."""
        return self._last_head.conv_seg

    def _features(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """Last head's features and (cascade) the coarse head's logits at output stride."""
        check_images(x, self.in_channels)
        levels = self.backbone.forward_stages(x)  # [(B, C_i, H / s_i, W / s_i)]
        if not self.cascade:
            return self.decode_head.forward_features(levels), None  # (B, D, h, w)
        coarse, refine = self.decode_head
        coarse_logits = coarse(levels)  # (B, C, h, w)
        return refine.forward_features(levels, coarse_logits), coarse_logits  # (B, D, h, w)

    def forward_features(self, x: Tensor) -> Tensor:
        """The (last) head's features right before dropout and classifier.

        Shape:
            x: ``(B, in_channels, H, W)`` ->
            ``(B, feat_dim, H / output_stride, W / output_stride)``.

        Raises:
            ValueError: ``x`` is not a float ``(B, in_channels, H, W)`` tensor.
        """
        return self._features(x)[0]

    def forward_head(self, features: Tensor) -> Tensor:
        """Logits at feature resolution: dropout (training only) then ``classifier``.

        Shape:
            features: ``(B, feat_dim, h, w)`` -> ``(B, num_classes, h, w)``.

        Raises:
            ValueError: ``features`` is not ``(B, feat_dim, h, w)``.
        """
        check_features(features, self.feat_dim, dense=True)
        return self._last_head.forward_head(features)  # (B, C, h, w)

    def _train_pass(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        features, coarse_logits = self._features(x)  # (B, D, h, w), (B, C, h, w) | None
        return features, self._last_head.forward_head(features), coarse_logits
