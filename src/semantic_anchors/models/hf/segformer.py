"""Hugging Face ``transformers`` segmentors behind the model contract (extra ``[hf]``).

* ``segformer_b0`` ... ``segformer_b5``: SegFormer (MiT encoder + all-MLP decoder). SAR
  regularizes the fused decoder map after ``linear_fuse`` + BN + ReLU, before dropout and
  ``decode_head.classifier``: the only single map the classifier reads.

UperNet (``upernet_swin_*``, ``upernet_convnext_t``) is in :mod:`.upernet`.

Each adapter holds the HF model as ``hf_model`` (keys unchanged); ``pretrained=`` is a local
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
    "HFSegformer",
    "build_segformer",
    "segformer_b0",
    "segformer_b1",
    "segformer_b2",
    "segformer_b3",
    "segformer_b4",
    "segformer_b5",
]


class HFSegformer(HFDenseSegmentor):
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
        pretrained: a local ``save_pretrained`` folder (see :func:`.common.build_hf_model`).
        config_overrides: more ``SegformerConfig`` fields, e.g. small ``hidden_sizes`` for tests.

    Raises:
        ValueError / TypeError: bad arguments (named in the message).
        FileNotFoundError: ``pretrained`` is not a directory.
    """
    transformers = common.import_transformers()
    hidden_sizes, depths, decoder = _MIT[variant]
    defaults = {
        "num_labels": check_int("num_classes", num_classes),
        "num_channels": check_int("in_channels", in_channels),
        "hidden_sizes": list(hidden_sizes),
        "depths": list(depths),
        "decoder_hidden_size": decoder,
    }
    config = common.make_config(
        transformers.SegformerConfig, defaults, config_overrides, "config_overrides"
    )
    model_class = transformers.SegformerForSemanticSegmentation
    return HFSegformer(common.build_hf_model(model_class, config, pretrained))


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
