"""``SmallCNN``: a fast conv-BN-ReLU network for CPU demos and tests (~150k parameters).

Four stages of 3x3 ``ConvBNReLU`` (16, 32, 64, 128 channels; two convolutions in the first three
stages, one in the last), each starting with a stride-2 convolution. It classifies 28x28
Fashion-MNIST or 32x32 / 64x64 colour images, and is the backbone of the ``fcn_small`` segmentor,
where stride is replaced by dilation to keep the output stride at 8 (or 4).
"""

from __future__ import annotations

import os
from typing import Any

from torch import Tensor, nn

from semantic_anchors._model_checks import check_choice, check_int

from ..classifier import ClassificationModel
from ..io.pretrained import load_pretrained
from ..layers import ConvBNReLU, init_conv_bn
from ..registry import inherit_signature, register_model

__all__ = ["SmallCNN", "small_cnn"]

_CONVS_PER_STAGE = (2, 2, 2, 1)
_FIRST_CONV = "stages.0.0.conv.weight"
_OUTPUT_STRIDES = (4, 8, 16)


class SmallCNN(ClassificationModel):
    """Small four-stage CNN classifier / backbone.

    Args:
        num_classes: classes of ``fc``; 0 builds a headless backbone.
        in_channels: image channels (1 for Fashion-MNIST).
        widths: channels of the four stages.
        output_stride: 16 (classification), 8 or 4: the last one / two stages are dilated.
        drop_rate: dropout on the pooled features before ``fc``.
        pretrained: a local checkpoint of a SmallCNN, e.g. a classification run folder of this
            project (its ``checkpoints/last.ckpt``: the model's weights, not SAR's); ``fc.*`` is
            ignored and the first conv is adapted to ``in_channels``.

    Attributes:
        stage_channels: ``widths``; ``feat_dim`` is ``widths[-1]`` (128).

    Shape:
        x: ``(B, in_channels, H, W)``; ``forward_stages``: maps at strides 2, 4, 8, 16 (capped by
        ``output_stride``); features ``(B, feat_dim)``; logits ``(B, num_classes)``.

    Raises:
        ValueError / TypeError: bad ``num_classes``, ``in_channels``, ``widths``,
            ``output_stride`` or ``drop_rate``.

    Example:
        >>> import torch
        >>> model = SmallCNN(num_classes=10, in_channels=1)
        >>> model(torch.randn(4, 1, 28, 28)).shape
        torch.Size([4, 10])
    """

    def __init__(
        self,
        num_classes: int = 10,
        *,
        in_channels: int = 3,
        widths: tuple[int, int, int, int] = (16, 32, 64, 128),
        output_stride: int = 16,
        drop_rate: float = 0.0,
        pretrained: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels)
        self.output_stride = check_choice("output_stride", output_stride, _OUTPUT_STRIDES)
        if not isinstance(widths, (tuple, list)) or len(widths) != len(_CONVS_PER_STAGE):
            raise ValueError(f"widths: expected 4 channel counts, got {widths!r}")
        for width in widths:
            check_int("widths", width)
        self.stage_channels = tuple(widths)

        stages, channels, stride, dilation = [], in_channels, 1, 1
        for width, convs in zip(widths, _CONVS_PER_STAGE, strict=True):
            previous_dilation = dilation
            if stride * 2 > output_stride:
                conv_stride, dilation = 1, dilation * 2
            else:
                conv_stride, stride = 2, stride * 2
            layers = [ConvBNReLU(channels, width, stride=conv_stride, dilation=previous_dilation)]
            layers += [ConvBNReLU(width, width, dilation=dilation) for _ in range(1, convs)]
            stages.append(nn.Sequential(*layers))
            channels = width
        self.stages = nn.ModuleList(stages)
        self._build_head(num_classes, drop_rate, classifier_name="fc")
        self.apply(init_conv_bn)
        if pretrained is not None:
            load_pretrained(self, pretrained, skip_prefixes=("fc.",), first_conv=_FIRST_CONV)

    def forward_stages(self, x: Tensor) -> list[Tensor]:
        """Outputs of the four stages.

        Shape:
            x: ``(B, in_channels, H, W)`` -> ``[(B, widths[i], H / s_i, W / s_i)]`` with
            ``s = (2, 4, 8, 16)`` capped at ``output_stride``.
        """
        outputs = []
        for stage in self.stages:
            x = stage(x)  # (B, widths[i], H / s_i, W / s_i)
            outputs.append(x)
        return outputs


@register_model(task="classification")
@inherit_signature(SmallCNN)
def small_cnn(num_classes: int = 10, **kwargs: Any) -> SmallCNN:
    """Small fast CNN for CPU demos and tests; arguments of :class:`SmallCNN`."""
    return SmallCNN(num_classes, **kwargs)
