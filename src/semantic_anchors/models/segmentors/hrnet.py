"""The registered HRNetV2 segmentors, as mmseg's configs name and build them.

``fcn_hr{18,48}``: mmseg's ``configs/hrnet/fcn_hr*`` (the head of the SAR authors' configs): the
four branches resized to stride 4 and concatenated (270 / 720 channels), one 1x1 conv-BN-ReLU of
as many channels (the features SAR regularizes), no dropout, ``conv_seg``.
``ocrnet_hr{18,48}``: mmseg's ``configs/ocrnet/ocrnet_hr*``: the same FCN head as a coarse first
stage (loss weight 0.4), then the OCR head (512 channels, 256 OCR channels), whose 512-channel
object-contextual features SAR regularizes. Keys equal mmseg's (``backbone.*``, ``decode_head.*``
or ``decode_head.0.*`` / ``decode_head.1.*``).
"""

from __future__ import annotations

import os
from typing import Any

from ..backbones.hrnet import HRNet, hrnetv2_config
from ..heads.fcn_concat import ResizeConcatFCNHead
from ..heads.ocr import OCRHead
from ..registry import inherit_signature, register_model
from .multi_level import MultiLevelSegmentor

__all__ = [
    "build_hrnet_segmentor",
    "fcn_hr18",
    "fcn_hr48",
    "ocrnet_hr18",
    "ocrnet_hr48",
]

_HEADS = ("fcn", "ocr")


def build_hrnet_segmentor(
    width: int,
    head: str,
    num_classes: int = 19,
    *,
    in_channels: int = 3,
    ocr_head_channels: int = 512,
    ocr_channels: int = 256,
    dropout: float = 0.0,
    aux_loss_weight: float = 0.4,
    pretrained: str | os.PathLike[str] | None = None,
) -> MultiLevelSegmentor:
    """FCN or OCRNet segmentor on HRNetV2-W``width``, output stride 4.

    Args:
        width: HRNetV2 width, 18 or 48 (mmseg's), or another (branches ``w * 2**i``).
        head: ``"fcn"`` (resize-concat FCN head) or ``"ocr"`` (that FCN head, then OCR).
        num_classes: classes (19 for Cityscapes, 150 for ADE20K, 59 for Pascal-Context-59).
        in_channels: image channels.
        ocr_head_channels: OCR head channels = ``feat_dim`` of OCRNet.
        ocr_channels: OCR attention channels.
        dropout: dropout before the classifiers (none in mmseg's configs).
        aux_loss_weight: OCRNet's coarse-head loss weight, exposed as ``model.aux_loss_weight``.
        pretrained: local ImageNet checkpoint of the backbone, mmseg format
            (``open-mmlab://msra/hrnetv2_w48`` saved to a file); its classifier keys are ignored.

    Raises:
        ValueError / TypeError: bad arguments (named in the message); see :class:`HRNet`.
        FileNotFoundError: ``pretrained`` does not exist.
    """
    if head not in _HEADS:
        raise ValueError(f"head: expected one of {list(_HEADS)}, got {head!r}")
    backbone = HRNet(hrnetv2_config(width), in_channels=in_channels, pretrained=pretrained)
    levels = backbone.stage_channels
    fcn = ResizeConcatFCNHead(levels, sum(levels), num_classes, dropout=dropout)
    if head == "fcn":
        return MultiLevelSegmentor(backbone, fcn)
    ocr = OCRHead(
        levels, ocr_head_channels, num_classes, ocr_channels=ocr_channels, dropout=dropout
    )
    return MultiLevelSegmentor(backbone, [fcn, ocr], aux_loss_weight=aux_loss_weight)


@register_model(task="segmentation")
@inherit_signature(build_hrnet_segmentor, bound=("width", "head"))
def fcn_hr18(num_classes: int = 19, **kwargs: Any) -> MultiLevelSegmentor:
    """FCN on HRNetV2-W18 (feat_dim 270, 9,640,849 parameters with 19 classes); arguments of
    :func:`build_hrnet_segmentor`."""
    return build_hrnet_segmentor(18, "fcn", num_classes, **kwargs)


@register_model(task="segmentation")
@inherit_signature(build_hrnet_segmentor, bound=("width", "head"))
def fcn_hr48(num_classes: int = 19, **kwargs: Any) -> MultiLevelSegmentor:
    """FCN on HRNetV2-W48 (feat_dim 720, 65,858,659 parameters with 19 classes); arguments of
    :func:`build_hrnet_segmentor`."""
    return build_hrnet_segmentor(48, "fcn", num_classes, **kwargs)


@register_model(task="segmentation")
@inherit_signature(build_hrnet_segmentor, bound=("width", "head"))
def ocrnet_hr18(num_classes: int = 19, **kwargs: Any) -> MultiLevelSegmentor:
    """OCRNet on HRNetV2-W18 (feat_dim 512, 12,080,036 parameters with 19 classes); arguments of
    :func:`build_hrnet_segmentor`."""
    return build_hrnet_segmentor(18, "ocr", num_classes, **kwargs)


@register_model(task="segmentation")
@inherit_signature(build_hrnet_segmentor, bound=("width", "head"))
def ocrnet_hr48(num_classes: int = 19, **kwargs: Any) -> MultiLevelSegmentor:
    """OCRNet on HRNetV2-W48 (feat_dim 512, 70,371,446 parameters with 19 classes); arguments of
    :func:`build_hrnet_segmentor`."""
    return build_hrnet_segmentor(48, "ocr", num_classes, **kwargs)
