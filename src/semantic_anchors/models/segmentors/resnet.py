"""The registered segmentation models (mmseg-style FCN / DeepLabV3 on ResNet, and a small one).

``{fcn,deeplabv3}_r{18,50,101}_d8``: ResNetV1c backbone (deep stem), output stride 8, main head on
layer4, auxiliary FCN head on layer3 (one conv, no concatenation, loss weight 0.4). Channels
follow the mmseg configs: 512 (auxiliary 256) for ResNet-50/101, 128 (auxiliary 64) for ResNet-18.
"""

from __future__ import annotations

import os
from typing import Any

from ..backbones.resnet import ResNet
from ..backbones.small import SmallCNN
from ..heads.aspp import ASPPHead
from ..heads.base import DecodeHead
from ..heads.fcn import FCNHead
from ..registry import inherit_signature, register_model
from .segmentor import Segmentor

__all__ = [
    "build_resnet_segmentor",
    "deeplabv3_r18_d8",
    "deeplabv3_r50_d8",
    "deeplabv3_r101_d8",
    "fcn_r18_d8",
    "fcn_r50_d8",
    "fcn_r101_d8",
    "fcn_small",
]

_HEADS = ("fcn", "aspp")
# depth -> (decode head channels, auxiliary head channels), as in the mmseg configs
_CHANNELS = {18: (128, 64), 34: (128, 64), 50: (512, 256), 101: (512, 256)}
_ASPP_DILATIONS_AT_8 = (1, 12, 24, 36)


def _decode_head(
    head: str,
    in_channels: int,
    channels: int,
    num_classes: int,
    dropout: float,
    output_stride: int,
    dilations: tuple[int, ...] | None,
) -> DecodeHead:
    if head == "fcn":
        if dilations is not None:
            raise ValueError(f"dilations: only used by the ASPP head, got {dilations!r} for FCN")
        return FCNHead(in_channels, channels, num_classes, dropout=dropout)
    if dilations is None:  # the DeepLabV3 rule: rates scale inversely with the output stride
        dilations = tuple(max(1, d * 8 // output_stride) for d in _ASPP_DILATIONS_AT_8)
    return ASPPHead(in_channels, channels, num_classes, dilations=dilations, dropout=dropout)


def build_resnet_segmentor(
    depth: int,
    head: str,
    num_classes: int = 19,
    *,
    in_channels: int = 3,
    output_stride: int = 8,
    deep_stem: bool = True,
    aux_head: bool = True,
    channels: int | None = None,
    aux_channels: int | None = None,
    dilations: tuple[int, ...] | None = None,
    dropout: float = 0.1,
    aux_loss_weight: float = 0.4,
    pretrained: str | os.PathLike[str] | None = None,
) -> Segmentor:
    """FCN or DeepLabV3 segmentor on a dilated ResNet.

    Args:
        depth: ResNet depth, 18, 34, 50 or 101.
        head: ``"fcn"`` or ``"aspp"`` (DeepLabV3).
        num_classes: classes (19 for Cityscapes).
        in_channels: image channels.
        output_stride: 8 (the "d8" default) or 16 (or 32).
        deep_stem: ResNetV1c deep stem (as mmseg's baselines).
        aux_head: add the auxiliary FCN head on layer3.
        channels: decode head channels = ``feat_dim`` (default: 512 for 50/101, 128 for 18/34).
        aux_channels: auxiliary head channels (default: 256 for 50/101, 64 for 18/34).
        dilations: ASPP dilations (default ``(1, 12, 24, 36)`` at output stride 8, scaled by
            ``8 / output_stride``, e.g. ``(1, 6, 12, 18)`` at 16).
        dropout: dropout before the classifiers.
        aux_loss_weight: exposed as ``model.aux_loss_weight`` for the training code.
        pretrained: local ImageNet checkpoint of the backbone (torchvision format with
            ``deep_stem=False``, mmcv ``resnet*_v1c`` format with ``deep_stem=True``); ``fc.*`` is
            ignored.

    Raises:
        ValueError / TypeError: bad arguments (named in the message); see :class:`ResNet`.
        FileNotFoundError: ``pretrained`` does not exist.
    """
    if head not in _HEADS:
        raise ValueError(f"head: expected one of {list(_HEADS)}, got {head!r}")
    backbone = ResNet(
        depth,
        num_classes=0,
        in_channels=in_channels,
        output_stride=output_stride,
        deep_stem=deep_stem,
        pretrained=pretrained,
    )
    default_channels, default_aux_channels = _CHANNELS[depth]
    decode_head = _decode_head(
        head,
        backbone.stage_channels[-1],
        default_channels if channels is None else channels,
        num_classes,
        dropout,
        output_stride,
        dilations,
    )
    auxiliary_head = None
    if aux_head:
        auxiliary_head = FCNHead(
            backbone.stage_channels[-2],
            default_aux_channels if aux_channels is None else aux_channels,
            num_classes,
            num_convs=1,
            concat_input=False,
            dropout=dropout,
        )
    return Segmentor(backbone, decode_head, auxiliary_head, aux_loss_weight=aux_loss_weight)


@register_model(task="segmentation")
@inherit_signature(build_resnet_segmentor, bound=("depth", "head"))
def fcn_r18_d8(num_classes: int = 19, **kwargs: Any) -> Segmentor:
    """FCN on a dilated ResNet-18-V1c; arguments of :func:`build_resnet_segmentor`."""
    return build_resnet_segmentor(18, "fcn", num_classes, **kwargs)


@register_model(task="segmentation")
@inherit_signature(build_resnet_segmentor, bound=("depth", "head"))
def deeplabv3_r18_d8(num_classes: int = 19, **kwargs: Any) -> Segmentor:
    """DeepLabV3 on a dilated ResNet-18-V1c; arguments of :func:`build_resnet_segmentor`."""
    return build_resnet_segmentor(18, "aspp", num_classes, **kwargs)


@register_model(task="segmentation")
@inherit_signature(build_resnet_segmentor, bound=("depth", "head"))
def fcn_r50_d8(num_classes: int = 19, **kwargs: Any) -> Segmentor:
    """FCN on a dilated ResNet-50-V1c; arguments of :func:`build_resnet_segmentor`."""
    return build_resnet_segmentor(50, "fcn", num_classes, **kwargs)


@register_model(task="segmentation")
@inherit_signature(build_resnet_segmentor, bound=("depth", "head"))
def deeplabv3_r50_d8(num_classes: int = 19, **kwargs: Any) -> Segmentor:
    """DeepLabV3 on a dilated ResNet-50-V1c; arguments of :func:`build_resnet_segmentor`."""
    return build_resnet_segmentor(50, "aspp", num_classes, **kwargs)


@register_model(task="segmentation")
@inherit_signature(build_resnet_segmentor, bound=("depth", "head"))
def fcn_r101_d8(num_classes: int = 19, **kwargs: Any) -> Segmentor:
    """FCN on a dilated ResNet-101-V1c; arguments of :func:`build_resnet_segmentor`."""
    return build_resnet_segmentor(101, "fcn", num_classes, **kwargs)


@register_model(task="segmentation")
@inherit_signature(build_resnet_segmentor, bound=("depth", "head"))
def deeplabv3_r101_d8(num_classes: int = 19, **kwargs: Any) -> Segmentor:
    """DeepLabV3 on a dilated ResNet-101-V1c; arguments of :func:`build_resnet_segmentor`."""
    return build_resnet_segmentor(101, "aspp", num_classes, **kwargs)


@register_model(task="segmentation")
def fcn_small(
    num_classes: int = 19,
    *,
    in_channels: int = 3,
    output_stride: int = 8,
    channels: int = 64,
    aux_head: bool = False,
    aux_channels: int = 32,
    dropout: float = 0.1,
    aux_loss_weight: float = 0.4,
    pretrained: str | os.PathLike[str] | None = None,
) -> Segmentor:
    """Tiny FCN on :class:`SmallCNN` for CPU demos and tests (``feat_dim = channels = 64``).

    Args:
        num_classes: classes.
        in_channels: image channels.
        output_stride: 8 (default) or 4 (slower), or 16.
        channels: FCN head channels = ``feat_dim``.
        aux_head: auxiliary FCN head on the third stage (64 channels).
        aux_channels: auxiliary head channels.
        dropout: dropout before the classifiers.
        aux_loss_weight: exposed as ``model.aux_loss_weight``.
        pretrained: the backbone's weights from a local :class:`SmallCNN` checkpoint, e.g. a
            ``small_cnn`` classification run folder (``model.pretrained=runs/fashion-lt``): the
            classification-to-segmentation hand-over of SAR pre-training.

    Raises:
        ValueError / TypeError: bad arguments (named in the message).
        FileNotFoundError: ``pretrained`` does not exist.

    Example:
        >>> import torch
        >>> from semantic_anchors.models import create_model
        >>> model = create_model("fcn_small", num_classes=6)
        >>> model(torch.randn(2, 3, 64, 64)).shape
        torch.Size([2, 6, 64, 64])
    """
    backbone = SmallCNN(
        0, in_channels=in_channels, output_stride=output_stride, pretrained=pretrained
    )
    decode_head = FCNHead(backbone.stage_channels[-1], channels, num_classes, dropout=dropout)
    auxiliary_head = None
    if aux_head:
        auxiliary_head = FCNHead(
            backbone.stage_channels[-2],
            aux_channels,
            num_classes,
            num_convs=1,
            concat_input=False,
            dropout=dropout,
        )
    return Segmentor(backbone, decode_head, auxiliary_head, aux_loss_weight=aux_loss_weight)
