"""UperNet (PPM + FPN) on Swin / ConvNeXt from ``transformers`` behind the model contract.

``upernet_swin_t`` / ``_s`` / ``_b`` / ``_l`` and ``upernet_convnext_t``: UperNet with the FCN
auxiliary head on stage 3 (loss weight 0.4), sized as mmseg's ``upernet_swin`` /
``upernet_convnext`` configs. SAR regularizes the FPN bottleneck output
(``decode_head.fpn_bottleneck``), the map ``decode_head.classifier`` reads.

The adapter holds the HF model as ``hf_model`` (keys unchanged); ``pretrained=`` is a local
``save_pretrained`` folder (see :func:`semantic_anchors.models.hf.common.build_hf_model`).
Registered when :mod:`semantic_anchors.models.hf` is imported; ``transformers`` is imported in
the builders.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from semantic_anchors._model_checks import check_int

from ..registry import inherit_signature, register_model
from . import common
from .dense import HFDenseSegmentor

__all__ = [
    "HFUperNet",
    "build_upernet",
    "upernet_convnext_t",
    "upernet_swin_b",
    "upernet_swin_l",
    "upernet_swin_s",
    "upernet_swin_t",
]


class HFUperNet(HFDenseSegmentor):
    """``UperNetForSemanticSegmentation`` (with its FCN auxiliary head) with the model contract.

    ``forward_features`` runs the backbone once and the UperNet head up to its FPN bottleneck:
    PPM on the last stage, lateral 1x1 convs, the top-down path, the FPN 3x3 convs, all levels
    upsampled to stage 1 and concatenated, then ``fpn_bottleneck``. The HF head has no dropout,
    so ``forward_head`` is ``decode_head.classifier``. ``forward_train`` also runs
    ``auxiliary_head`` on the same backbone features.

    Attributes:
        hf_model: the ``transformers`` model (its keys are the HF checkpoint's).
        num_classes, feat_dim (``hidden_size``, 512), dense (``True``), output_stride (4),
        aux_loss_weight (``config.auxiliary_loss_weight``, 0.4, or 0.0 without the auxiliary
        head), classifier (``hf_model.decode_head.classifier``). Swin's unused
        ``backbone.swin.layernorm`` is frozen (``requires_grad=False``).

    Shape:
        x: ``(B, in_channels, H, W)``; features ``(B, D, H / 4, W / 4)``.
    """

    def __init__(self, hf_model: nn.Module) -> None:
        config = hf_model.config
        super().__init__(
            hf_model,
            in_channels=config.backbone_config.num_channels,
            feat_dim=config.hidden_size,
            stride=config.backbone_config.patch_size,
        )
        if hf_model.auxiliary_head is not None:
            self.aux_loss_weight = float(config.auxiliary_loss_weight)
        # HF's SwinBackbone keeps SwinModel's final LayerNorm, which its forward never uses:
        # frozen, so DDP and optimizers see no unused trainable parameter; its keys stay.
        unused = getattr(getattr(hf_model.backbone, "swin", None), "layernorm", None)
        if isinstance(unused, nn.Module):
            unused.requires_grad_(False)

    def _features_and_aux(self, x: Tensor, *, aux: bool) -> tuple[Tensor, Tensor | None]:
        stages = self.hf_model.backbone(x).feature_maps  # [(B, D_i, h_i, w_i)] * 4
        head = self.hf_model.decode_head
        # (B, D, h_i, w_i) per level, then the PPM on the last stage
        laterals = [conv(stages[i]) for i, conv in enumerate(head.lateral_convs)]
        laterals.append(head.psp_forward(stages))  # (B, D, h_4, w_4)
        for i in range(len(laterals) - 1, 0, -1):  # top-down path
            laterals[i - 1] = laterals[i - 1] + F.interpolate(
                laterals[i], size=laterals[i - 1].shape[2:], mode="bilinear", align_corners=False
            )
        outs = [conv(laterals[i]) for i, conv in enumerate(head.fpn_convs)]  # (B, D, h_i, w_i)
        outs.append(laterals[-1])
        size = outs[0].shape[2:]
        outs = [outs[0]] + [
            F.interpolate(out, size=size, mode="bilinear", align_corners=False) for out in outs[1:]
        ]
        features = head.fpn_bottleneck(torch.cat(outs, dim=1))  # (B, D, h, w)
        aux_logits = None
        if aux and self.hf_model.auxiliary_head is not None:
            aux_logits = self.hf_model.auxiliary_head(stages)  # (B, C, h_3, w_3)
        return features, aux_logits


# --- registered builders ----------------------------------------------------------------------


def _swin(embed_dim: int, depths: tuple[int, ...], heads: tuple[int, ...], window: int) -> dict:
    return {
        "model_type": "swin",
        "embed_dim": embed_dim,
        "depths": list(depths),
        "num_heads": list(heads),
        "window_size": window,
        "drop_path_rate": 0.3,  # mmseg's upernet_swin configs
    }


# Backbones as the openmmlab/upernet-* checkpoints (Swin-B / Swin-L: window 12, the
# ImageNet-22K 384x384-pretrained ones of mmseg's swin-{base,large}-patch4-window12 configs).
_UPERNET_BACKBONES = {
    "swin_t": _swin(96, (2, 2, 6, 2), (3, 6, 12, 24), 7),
    "swin_s": _swin(96, (2, 2, 18, 2), (3, 6, 12, 24), 7),
    "swin_b": _swin(128, (2, 2, 18, 2), (4, 8, 16, 32), 12),
    "swin_l": _swin(192, (2, 2, 18, 2), (6, 12, 24, 48), 12),
    "convnext_t": {
        "model_type": "convnext",
        "depths": [3, 3, 9, 3],
        "hidden_sizes": [96, 192, 384, 768],
        "drop_path_rate": 0.4,  # mmseg's upernet_convnext config
    },
}


def build_upernet(
    backbone: str,
    num_classes: int = 19,
    *,
    in_channels: int = 3,
    aux_head: bool = True,
    pretrained: str | os.PathLike[str] | None = None,
    config_overrides: Mapping[str, Any] | None = None,
    backbone_overrides: Mapping[str, Any] | None = None,
) -> HFUperNet:
    """UperNet on a Swin / ConvNeXt backbone from an ``UperNetConfig``.

    Args:
        backbone: ``"swin_t"``, ``"swin_s"``, ``"swin_b"``, ``"swin_l"`` or ``"convnext_t"``.
        num_classes: classes (``config.num_labels``).
        in_channels: image channels (the backbone config's ``num_channels``).
        aux_head: the FCN auxiliary head on stage 3 (``use_auxiliary_head``, loss weight 0.4).
        pretrained: a local ``save_pretrained`` folder (see :func:`.common.build_hf_model`).
        config_overrides: more ``UperNetConfig`` fields (``hidden_size``, ``auxiliary_channels``).
        backbone_overrides: more ``SwinConfig`` / ``ConvNextConfig`` fields.

    Raises:
        ValueError / TypeError: bad arguments (named in the message).
        FileNotFoundError: ``pretrained`` is not a directory.
    """
    transformers = common.import_transformers()
    backbone_defaults = dict(_UPERNET_BACKBONES[backbone])
    config_class = transformers.CONFIG_MAPPING[backbone_defaults.pop("model_type")]
    backbone_defaults["num_channels"] = check_int("in_channels", in_channels)
    backbone_defaults["out_features"] = ["stage1", "stage2", "stage3", "stage4"]
    backbone_config = common.make_config(
        config_class, backbone_defaults, backbone_overrides, "backbone_overrides"
    )
    if not isinstance(aux_head, bool):
        raise TypeError(f"aux_head: expected a bool, got {aux_head!r}")
    defaults = {
        "backbone_config": backbone_config,
        "num_labels": check_int("num_classes", num_classes),
        "use_auxiliary_head": aux_head,
        "auxiliary_loss_weight": 0.4,
    }
    config = common.make_config(
        transformers.UperNetConfig, defaults, config_overrides, "config_overrides"
    )
    model_class = transformers.UperNetForSemanticSegmentation
    return HFUperNet(common.build_hf_model(model_class, config, pretrained))


@register_model(task="segmentation")
@inherit_signature(build_upernet, bound=("backbone",))
def upernet_swin_t(num_classes: int = 19, **kwargs: Any) -> HFUperNet:
    """UperNet + auxiliary FCN on Swin-T (59.9 M parameters at 150 classes)."""
    return build_upernet("swin_t", num_classes, **kwargs)


@register_model(task="segmentation")
@inherit_signature(build_upernet, bound=("backbone",))
def upernet_swin_s(num_classes: int = 19, **kwargs: Any) -> HFUperNet:
    """UperNet + auxiliary FCN on Swin-S; see :func:`build_upernet`."""
    return build_upernet("swin_s", num_classes, **kwargs)


@register_model(task="segmentation")
@inherit_signature(build_upernet, bound=("backbone",))
def upernet_swin_b(num_classes: int = 19, **kwargs: Any) -> HFUperNet:
    """UperNet + auxiliary FCN on Swin-B (window 12); see :func:`build_upernet`."""
    return build_upernet("swin_b", num_classes, **kwargs)


@register_model(task="segmentation")
@inherit_signature(build_upernet, bound=("backbone",))
def upernet_swin_l(num_classes: int = 19, **kwargs: Any) -> HFUperNet:
    """UperNet + auxiliary FCN on Swin-L (window 12); see :func:`build_upernet`."""
    return build_upernet("swin_l", num_classes, **kwargs)


@register_model(task="segmentation")
@inherit_signature(build_upernet, bound=("backbone",))
def upernet_convnext_t(num_classes: int = 19, **kwargs: Any) -> HFUperNet:
    """UperNet + auxiliary FCN on ConvNeXt-T; see :func:`build_upernet`."""
    return build_upernet("convnext_t", num_classes, **kwargs)
