"""Hugging Face ``transformers`` image classifiers behind the model contract (extra ``[hf]``).

``hf_vit_s16`` / ``hf_vit_b16`` (``ViTForImageClassification``) and ``hf_convnext_t``
(``ConvNextForImageClassification``), built from their configs, weights from a local
``save_pretrained`` folder (``pretrained=``). The wrapped model is ``hf_model``; its keys are the
HF checkpoint's. SAR regularizes the vector the HF classifier reads: ViT's final-LayerNorm
``[CLS]`` token, ConvNeXt's LayerNorm of the globally averaged last stage. Neither HF model has a
dropout before ``classifier``. Registered when :mod:`semantic_anchors.models.hf` is imported;
``transformers`` is imported inside the builders only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from semantic_anchors._model_checks import check_features, check_images, check_int

from ..classifier import VectorModel
from ..registry import inherit_signature, register_model
from . import common

__all__ = ["HFImageClassifier", "build_hf_classifier", "hf_convnext_t", "hf_vit_b16", "hf_vit_s16"]


class HFImageClassifier(VectorModel):
    """A ``transformers`` ``*ForImageClassification`` model with the model contract.

    Args:
        hf_model: ``ViTForImageClassification`` or ``ConvNextForImageClassification``.

    Attributes:
        hf_model: the wrapped model.
        num_classes, feat_dim (the width the classifier reads), dense (``False``),
        aux_loss_weight (0.0), output_stride (the patch size: 16 for ViT, 32 for ConvNeXt),
        classifier (``hf_model.classifier``, an ``nn.Linear``).

    Shape:
        x: ``(B, in_channels, H, W)``; features ``(B, D)``; logits ``(B, num_classes)``.
        ViT accepts any ``H, W`` divisible by 16 (position embeddings are interpolated).

    Raises:
        TypeError: an HF model of another family.
    """

    aux_loss_weight = 0.0

    def __init__(self, hf_model: nn.Module) -> None:
        super().__init__()
        config = hf_model.config
        self.family = config.model_type
        if self.family == "vit":
            self.feat_dim, self.output_stride = config.hidden_size, config.patch_size
        elif self.family == "convnext":
            self.feat_dim, self.output_stride = config.hidden_sizes[-1], 32
        else:
            raise TypeError(f"hf_model: expected a ViT or ConvNeXt model, got {self.family!r}")
        self.hf_model = hf_model
        self.num_classes = config.num_labels
        self.in_channels = config.num_channels

    @property
    def classifier(self) -> nn.Linear:
        """The HF model's own final ``nn.Linear``, ``hf_model.classifier``."""
        return self.hf_model.classifier

    def forward_features(self, x: Tensor) -> Tensor:
        """The vector ``hf_model.classifier`` reads (ViT: ``[CLS]``; ConvNeXt: pooled + LN).

        Shape:
            x: ``(B, in_channels, H, W)`` -> ``(B, feat_dim)``.

        Raises:
            ValueError: ``x`` is not a float ``(B, in_channels, H, W)`` tensor.
        """
        check_images(x, self.in_channels)
        if self.family == "vit":
            tokens = self.hf_model.vit(x, interpolate_pos_encoding=True).last_hidden_state
            return tokens[:, 0]  # (B, D)
        return self.hf_model.convnext(x).pooler_output  # (B, D)

    def forward_head(self, features: Tensor) -> Tensor:
        """Logits: ``classifier(features)`` (the HF models have no dropout before it).

        Shape:
            features: ``(B, feat_dim)`` -> ``(B, num_classes)``.

        Raises:
            ValueError: ``features`` is not ``(B, feat_dim)``.
        """
        check_features(features, self.feat_dim, dense=False)
        return self.classifier(features)  # (B, C)


# ViT-S/16 and ViT-B/16 as DeiT / google/vit-base-patch16-224; ConvNeXt-T as facebook/convnext-tiny.
_ARCHITECTURES = {
    "vit_s16": (
        "vit",
        {
            "hidden_size": 384,
            "num_hidden_layers": 12,
            "num_attention_heads": 6,
            "intermediate_size": 1536,
            "patch_size": 16,
        },
    ),
    "vit_b16": (
        "vit",
        {
            "hidden_size": 768,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "intermediate_size": 3072,
            "patch_size": 16,
        },
    ),
    "convnext_t": ("convnext", {"depths": [3, 3, 9, 3], "hidden_sizes": [96, 192, 384, 768]}),
}


def build_hf_classifier(
    architecture: str,
    num_classes: int = 1000,
    *,
    in_channels: int = 3,
    image_size: int = 224,
    pretrained: str | os.PathLike[str] | None = None,
    config_overrides: Mapping[str, Any] | None = None,
) -> HFImageClassifier:
    """A ``transformers`` image classifier from its config.

    Args:
        architecture: ``"vit_s16"``, ``"vit_b16"`` or ``"convnext_t"``.
        num_classes: classes (``config.num_labels``).
        in_channels: image channels (``config.num_channels``).
        image_size: ViT's position-embedding grid (other sizes are interpolated); unused by
            ConvNeXt.
        pretrained: a local ``save_pretrained`` folder (see
            :func:`semantic_anchors.models.hf.common.build_hf_model`).
        config_overrides: more ``ViTConfig`` / ``ConvNextConfig`` fields.

    Raises:
        ValueError / TypeError: bad arguments (named in the message).
        FileNotFoundError: ``pretrained`` is not a directory.
    """
    transformers = common.import_transformers()
    family, sizes = _ARCHITECTURES[architecture]
    defaults: dict[str, Any] = {
        **sizes,
        "num_labels": check_int("num_classes", num_classes),
        "num_channels": check_int("in_channels", in_channels),
    }
    if family == "vit":
        defaults["image_size"] = check_int("image_size", image_size)
        config_class, model_class = transformers.ViTConfig, transformers.ViTForImageClassification
    else:
        config_class = transformers.ConvNextConfig
        model_class = transformers.ConvNextForImageClassification
    config = common.make_config(config_class, defaults, config_overrides, "config_overrides")
    return HFImageClassifier(common.build_hf_model(model_class, config, pretrained))


@register_model(task="classification")
@inherit_signature(build_hf_classifier, bound=("architecture",))
def hf_vit_s16(num_classes: int = 1000, **kwargs: Any) -> HFImageClassifier:
    """ViT-S/16 (HF transformers, 22.1 M parameters at 1000 classes)."""
    return build_hf_classifier("vit_s16", num_classes, **kwargs)


@register_model(task="classification")
@inherit_signature(build_hf_classifier, bound=("architecture",))
def hf_vit_b16(num_classes: int = 1000, **kwargs: Any) -> HFImageClassifier:
    """ViT-B/16 (HF transformers, 86.6 M parameters at 1000 classes)."""
    return build_hf_classifier("vit_b16", num_classes, **kwargs)


@register_model(task="classification")
@inherit_signature(build_hf_classifier, bound=("architecture",))
def hf_convnext_t(num_classes: int = 1000, **kwargs: Any) -> HFImageClassifier:
    """ConvNeXt-T (HF transformers, 28.6 M parameters at 1000 classes)."""
    return build_hf_classifier("convnext_t", num_classes, **kwargs)
