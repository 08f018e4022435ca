"""Hugging Face ``transformers`` segmentors behind the model contract (extra ``[hf]``).

* ``segformer_b0`` ... ``segformer_b5``: SegFormer (MiT encoder + all-MLP decoder). SAR
  regularizes the fused decoder map after ``linear_fuse`` + BN + ReLU, before dropout and
  ``decode_head.classifier``: the only single map the classifier reads.
* ``upernet_swin_t`` / ``_s`` / ``_b``, ``upernet_convnext_t``: UperNet (PPM + FPN) with the FCN
  auxiliary head on stage 3 (loss weight 0.4). SAR regularizes the FPN bottleneck output
  (``decode_head.fpn_bottleneck``), the map ``decode_head.classifier`` reads.

Each adapter holds the HF model as ``hf_model`` (keys unchanged); ``pretrained=`` is a local
``save_pretrained`` folder (see :func:`semantic_anchors.models.hf.build_hf_model`). Registered
when :mod:`semantic_anchors.models.hf` is imported; ``transformers`` is imported in the builders.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import hf
from ._validation import check_features, check_images, check_int
from .dense import DenseModel
from .layers import upsample_like
from .output import ModelOutput
from .registry import inherit_signature, register_model

__all__ = [
    "HFSegformer",
    "HFUperNet",
    "build_segformer",
    "build_upernet",
    "segformer_b0",
    "segformer_b1",
    "segformer_b2",
    "segformer_b3",
    "segformer_b4",
    "segformer_b5",
    "upernet_convnext_t",
    "upernet_swin_b",
    "upernet_swin_s",
    "upernet_swin_t",
]


class _HFSegmentor(DenseModel):
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

    def forward_train(self, x: Tensor) -> ModelOutput:
        """Features, upsampled logits and auxiliary logits from one encoder pass.

        Shape:
            x: ``(B, in_channels, H, W)`` -> features ``(B, D, h, w)``, logits and aux_logits
            ``(B, num_classes, H, W)`` (aux_logits ``None`` without an auxiliary head).

        Raises:
            ValueError: ``x`` is not a float ``(B, in_channels, H, W)`` tensor.
        """
        check_images(x, self.in_channels)
        features, aux_logits = self._features_and_aux(x, aux=True)  # (B, D, h, w)
        logits = upsample_like(self.forward_head(features), x)  # (B, C, H, W)
        if aux_logits is not None:
            aux_logits = upsample_like(aux_logits, x)  # (B, C, H, W)
        return ModelOutput(features, logits, aux_logits)


class HFSegformer(_HFSegmentor):
    """``SegformerForSemanticSegmentation`` with the model contract.

    ``forward_features`` runs the MiT encoder and the decoder up to the fused map:
    each stage projected by ``decode_head.linear_projections[i]``, upsampled to stage 1,
    concatenated (deepest first), then ``linear_fuse`` -> ``batch_norm`` -> ``activation``.
    ``forward_head`` applies ``decode_head.dropout`` and ``decode_head.classifier``, so
    ``forward_head(forward_features(x))`` equals ``hf_model(x).logits``.

    Attributes:
        hf_model: the ``transformers`` model (its keys are the HF checkpoint's).
        num_classes, feat_dim (``decoder_hidden_size``), dense (``True``), output_stride (4),
        aux_loss_weight (0.0), classifier (``hf_model.decode_head.classifier``).

    Shape:
        x: ``(B, in_channels, H, W)``; features ``(B, D, H / 4, W / 4)``.
    """

    def __init__(self, hf_model: nn.Module) -> None:
        config = hf_model.config
        if not config.reshape_last_stage:
            raise ValueError("config_overrides: reshape_last_stage must stay True for SegFormer")
        super().__init__(
            hf_model,
            in_channels=config.num_channels,
            feat_dim=config.decoder_hidden_size,
            stride=config.strides[0],
        )

    def _features_and_aux(self, x: Tensor, *, aux: bool) -> tuple[Tensor, None]:
        stages = self.hf_model.segformer(x, output_hidden_states=True).hidden_states
        head = self.hf_model.decode_head
        size = stages[0].shape[-2:]
        projected = []
        for stage, projection in zip(stages, head.linear_projections, strict=True):
            batch, _, height, width = stage.shape  # (B, D_i, h_i, w_i)
            mapped = projection(stage).transpose(1, 2)  # (B, D, h_i * w_i)
            mapped = mapped.reshape(batch, -1, height, width)  # (B, D, h_i, w_i)
            projected.append(F.interpolate(mapped, size=size, mode="bilinear", align_corners=False))
        fused = head.linear_fuse(torch.cat(projected[::-1], dim=1))  # (B, D, h, w)
        return head.activation(head.batch_norm(fused)), None  # (B, D, h, w)


class HFUperNet(_HFSegmentor):
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

# MiT-b0..b5 as the SegFormer paper / nvidia/mit-b* configs: hidden sizes, depths, decoder width.
_MIT = {
    "b0": ((32, 64, 160, 256), (2, 2, 2, 2), 256),
    "b1": ((64, 128, 320, 512), (2, 2, 2, 2), 256),
    "b2": ((64, 128, 320, 512), (3, 4, 6, 3), 768),
    "b3": ((64, 128, 320, 512), (3, 4, 18, 3), 768),
    "b4": ((64, 128, 320, 512), (3, 8, 27, 3), 768),
    "b5": ((64, 128, 320, 512), (3, 6, 40, 3), 768),
}


def build_segformer(
    variant: str,
    num_classes: int = 19,
    *,
    in_channels: int = 3,
    pretrained: str | os.PathLike[str] | None = None,
    config_overrides: Mapping[str, Any] | None = None,
) -> HFSegformer:
    """SegFormer-``variant`` (``"b0"`` ... ``"b5"``) from a ``SegformerConfig``.

    Args:
        variant: MiT size.
        num_classes: classes (``config.num_labels``).
        in_channels: image channels (``config.num_channels``).
        pretrained: a local ``save_pretrained`` folder (see :func:`.hf.build_hf_model`).
        config_overrides: more ``SegformerConfig`` fields, e.g. small ``hidden_sizes`` for tests.

    Raises:
        ValueError / TypeError: bad arguments (named in the message).
        FileNotFoundError: ``pretrained`` is not a directory.
    """
    transformers = hf.import_transformers()
    hidden_sizes, depths, decoder = _MIT[variant]
    defaults = {
        "num_labels": check_int("num_classes", num_classes),
        "num_channels": check_int("in_channels", in_channels),
        "hidden_sizes": list(hidden_sizes),
        "depths": list(depths),
        "decoder_hidden_size": decoder,
    }
    config = hf.make_config(
        transformers.SegformerConfig, defaults, config_overrides, "config_overrides"
    )
    model_class = transformers.SegformerForSemanticSegmentation
    return HFSegformer(hf.build_hf_model(model_class, config, pretrained))


def _swin(embed_dim: int, depths: tuple[int, ...], heads: tuple[int, ...], window: int) -> dict:
    return {
        "model_type": "swin",
        "embed_dim": embed_dim,
        "depths": list(depths),
        "num_heads": list(heads),
        "window_size": window,
        "drop_path_rate": 0.3,  # mmseg's upernet_swin configs
    }


# Backbones as the openmmlab/upernet-* checkpoints (Swin-B: window 12, the 22K-pretrained one).
_UPERNET_BACKBONES = {
    "swin_t": _swin(96, (2, 2, 6, 2), (3, 6, 12, 24), 7),
    "swin_s": _swin(96, (2, 2, 18, 2), (3, 6, 12, 24), 7),
    "swin_b": _swin(128, (2, 2, 18, 2), (4, 8, 16, 32), 12),
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
        backbone: ``"swin_t"``, ``"swin_s"``, ``"swin_b"`` or ``"convnext_t"``.
        num_classes: classes (``config.num_labels``).
        in_channels: image channels (the backbone config's ``num_channels``).
        aux_head: the FCN auxiliary head on stage 3 (``use_auxiliary_head``, loss weight 0.4).
        pretrained: a local ``save_pretrained`` folder (see :func:`.hf.build_hf_model`).
        config_overrides: more ``UperNetConfig`` fields (``hidden_size``, ``auxiliary_channels``).
        backbone_overrides: more ``SwinConfig`` / ``ConvNextConfig`` fields.

    Raises:
        ValueError / TypeError: bad arguments (named in the message).
        FileNotFoundError: ``pretrained`` is not a directory.
    """
    transformers = hf.import_transformers()
    backbone_defaults = dict(_UPERNET_BACKBONES[backbone])
    config_class = transformers.CONFIG_MAPPING[backbone_defaults.pop("model_type")]
    backbone_defaults["num_channels"] = check_int("in_channels", in_channels)
    backbone_defaults["out_features"] = ["stage1", "stage2", "stage3", "stage4"]
    backbone_config = hf.make_config(
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
    config = hf.make_config(
        transformers.UperNetConfig, defaults, config_overrides, "config_overrides"
    )
    model_class = transformers.UperNetForSemanticSegmentation
    return HFUperNet(hf.build_hf_model(model_class, config, pretrained))


@register_model(task="segmentation")
@inherit_signature(build_segformer, bound=("variant",))
def segformer_b0(num_classes: int = 19, **kwargs: Any) -> HFSegformer:
    """SegFormer-B0 (3.75 M parameters at 150 classes); see :func:`build_segformer`."""
    return build_segformer("b0", num_classes, **kwargs)


@register_model(task="segmentation")
@inherit_signature(build_segformer, bound=("variant",))
def segformer_b1(num_classes: int = 19, **kwargs: Any) -> HFSegformer:
    """SegFormer-B1; see :func:`build_segformer`."""
    return build_segformer("b1", num_classes, **kwargs)


@register_model(task="segmentation")
@inherit_signature(build_segformer, bound=("variant",))
def segformer_b2(num_classes: int = 19, **kwargs: Any) -> HFSegformer:
    """SegFormer-B2; see :func:`build_segformer`."""
    return build_segformer("b2", num_classes, **kwargs)


@register_model(task="segmentation")
@inherit_signature(build_segformer, bound=("variant",))
def segformer_b3(num_classes: int = 19, **kwargs: Any) -> HFSegformer:
    """SegFormer-B3; see :func:`build_segformer`."""
    return build_segformer("b3", num_classes, **kwargs)


@register_model(task="segmentation")
@inherit_signature(build_segformer, bound=("variant",))
def segformer_b4(num_classes: int = 19, **kwargs: Any) -> HFSegformer:
    """SegFormer-B4; see :func:`build_segformer`."""
    return build_segformer("b4", num_classes, **kwargs)


@register_model(task="segmentation")
@inherit_signature(build_segformer, bound=("variant",))
def segformer_b5(num_classes: int = 19, **kwargs: Any) -> HFSegformer:
    """SegFormer-B5; see :func:`build_segformer`."""
    return build_segformer("b5", num_classes, **kwargs)


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
def upernet_convnext_t(num_classes: int = 19, **kwargs: Any) -> HFUperNet:
    """UperNet + auxiliary FCN on ConvNeXt-T; see :func:`build_upernet`."""
    return build_upernet("convnext_t", num_classes, **kwargs)
