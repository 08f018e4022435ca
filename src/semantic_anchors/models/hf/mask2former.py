"""Mask2Former from ``transformers`` as a zoo segmentor that trains with its own loss (``[hf]``).

``mask2former_tiny`` (a CPU-sized Swin, 64 x 64 images) and ``mask2former_swin_t`` (the
published Swin-T size), built from ``Mask2FormerConfig``. Query-based: the model predicts ``Q``
masks, each with a class among ``C + 1`` (the last is "no object"), and its loss matches them to
the ground-truth segments (Hungarian matching on class, mask and dice costs) at every decoder
layer. What differs from the other segmentors:

* **Targets.** Its loss needs segments, not a label map: the batch's target is ``(B, 2, H, W)``,
  the semantic labels and an instance-id map (0: no instance). :func:`segments_from_maps` turns
  them into Mask2Former's ``mask_labels`` / ``class_labels``: one segment per instance (its
  pixels' class) and one per class of the pixels outside every instance ("stuff", e.g. the
  background); ignored pixels, and those of instance id 255 (an instance too small to be a
  segment, see :class:`~semantic_anchors.data.instances.InstanceMaps`), are in no segment.
* **Semantic inference** (``forward``): the class-weighted mask sum of Mask2Former's semantic
  post-processing, ``sum_q softmax(class_q)[:C] * sigmoid(mask_q)``, with the mask logits
  upsampled to the image first. Its argmax is the semantic prediction, so every metric, report
  and head / body / tail group of the package applies unchanged.
* **Its own loss** (``owns_loss``): ``forward_train(images, targets)`` returns the model's loss
  and, for a regularizer, every supervised layer's query embeddings with the class of the
  segment each was matched to (:class:`~semantic_anchors.queries.QueryCapture`; unmatched
  queries: ``ignore_index``). SAR then runs on vectors with a ``C + 1`` classifier
  (``no_object=True``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from semantic_anchors._model_checks import check_images, check_int
from semantic_anchors.data.instances import NO_SEGMENT_ID
from semantic_anchors.queries import QueryCapture

from ..registry import inherit_signature, register_model
from ..segmentors.dense import DenseModel
from . import common

__all__ = [
    "HFMask2Former",
    "QueryOutput",
    "build_mask2former",
    "mask2former_swin_t",
    "mask2former_tiny",
    "segments_from_maps",
]


class QueryOutput(NamedTuple):
    """What a model that owns its loss returns from ``forward_train(images, targets)``.

    Attributes:
        features: ``(N, D)`` features for a regularizer (a query model: every supervised
            layer's query embeddings).
        feature_labels: ``(N,)`` their labels (``ignore_index``: no label, e.g. unmatched).
        loss: the model's own training loss (a scalar).
    """

    features: Tensor
    feature_labels: Tensor
    loss: Tensor


def segments_from_maps(
    targets: Tensor, *, ignore_index: int = 255
) -> tuple[list[Tensor], list[Tensor]]:
    """Mask2Former's per-image segments from semantic labels and an instance-id map.

    Args:
        targets: ``(B, 2, H, W)`` long: channel 0 the semantic labels (``ignore_index``: no
            label), channel 1 the instance ids (0: the pixel is in no instance; 255: in an
            instance too small to be a segment, so in no segment at all).
        ignore_index: the semantic label of ignored pixels (in no segment).

    Returns:
        ``mask_labels`` (per image ``(N_i, H, W)`` float 0 / 1) and ``class_labels`` (per image
        ``(N_i,)`` long): the instances in increasing id order, then one "stuff" segment per
        class of the labelled pixels outside every instance, in increasing class order. An image
        with no labelled pixel gives ``N_i = 0``.

    Raises:
        ValueError: ``targets`` is not ``(B, 2, H, W)``, or an instance's pixels carry more
            than one class.
    """
    if targets.dim() != 4 or targets.shape[1] != 2:
        raise ValueError(
            "Mask2Former trains on (B, 2, H, W) targets (semantic labels, instance ids), got "
            f"{tuple(targets.shape)}: use a dataset with instances (e.g. data.instances: true)"
        )
    masks, classes = [], []
    for semantic, instance in targets.unbind(0):  # (H, W) each
        labelled = semantic != ignore_index
        image_masks, image_classes = [], []
        segmented = labelled & (instance != NO_SEGMENT_ID)
        for k in torch.unique(instance[segmented & (instance > 0)]).tolist():
            pixels = labelled & (instance == k)
            found = torch.unique(semantic[pixels])
            if found.numel() != 1:
                raise ValueError(f"instance {k} has pixels of classes {found.tolist()}")
            image_masks.append(pixels)
            image_classes.append(int(found))
        stuff = segmented & (instance == 0)
        for c in torch.unique(semantic[stuff]).tolist():
            image_masks.append(stuff & (semantic == c))
            image_classes.append(int(c))
        shape = semantic.shape
        masks.append(
            torch.stack(image_masks).float()
            if image_masks
            else torch.zeros(0, *shape, device=targets.device)
        )
        classes.append(torch.tensor(image_classes, dtype=torch.long, device=targets.device))
    return masks, classes


class HFMask2Former(DenseModel):
    """``Mask2FormerForUniversalSegmentation`` with the model contract, trained by its own loss.

    ``forward`` gives semantic scores; ``forward_features`` the final decoder layer's query
    embeddings ``(B, Q, D)`` and ``forward_head`` their class logits ``(B, Q, C + 1)``; the
    training step calls ``forward_train(images, targets)`` (see the module docstring).

    Attributes:
        hf_model: the ``transformers`` model (its keys are the HF checkpoint's).
        num_classes (``config.num_labels``), feat_dim (``hidden_dim``), dense (``True``),
        owns_loss (``True``), no_object (``True``: the class head has ``C + 1`` outputs),
        aux_loss_weight (0.0), classifier (``hf_model.class_predictor``), ignore_index.

    Shape:
        x: ``(B, in_channels, H, W)``; scores ``(B, C, H, W)``.
    """

    owns_loss = True
    no_object = True

    def __init__(self, hf_model: nn.Module, *, ignore_index: int = 255) -> None:
        super().__init__()
        config = hf_model.config
        self.hf_model = hf_model
        self.num_classes = config.num_labels
        self.in_channels = config.backbone_config.num_channels
        self.feat_dim = config.hidden_dim
        self.output_stride = 4
        self.aux_loss_weight = 0.0
        self.ignore_index = ignore_index

    @property
    def classifier(self) -> nn.Linear:
        """The class head, ``hf_model.class_predictor`` (``C + 1`` outputs, last: no object)."""
        return self.hf_model.class_predictor

    def _scores(self, out: Any, size: tuple[int, int]) -> Tensor:
        masks = F.interpolate(
            out.masks_queries_logits, size=size, mode="bilinear", align_corners=False
        )  # (B, Q, H, W)
        classes = out.class_queries_logits.softmax(dim=-1)[..., :-1]  # (B, Q, C)
        return torch.einsum("bqc,bqhw->bchw", classes, masks.sigmoid())  # (B, C, H, W)

    def forward(self, x: Tensor) -> Tensor:
        """Semantic scores, the class-weighted mask sum at the input size.

        Shape:
            x: ``(B, in_channels, H, W)`` -> ``(B, num_classes, H, W)``.
        """
        check_images(x, self.in_channels)
        return self._scores(self.hf_model(x), tuple(x.shape[-2:]))

    def forward_features(self, x: Tensor) -> Tensor:
        """The final decoder layer's query embeddings (the class head's input), ``(B, Q, D)``."""
        check_images(x, self.in_channels)
        out = self.hf_model.model(x, output_hidden_states=True, return_dict=True)
        return out.transformer_decoder_intermediate_states[-1].transpose(0, 1)  # (B, Q, D)

    def forward_head(self, features: Tensor) -> Tensor:
        """Class logits of query embeddings: ``(B, Q, D)`` -> ``(B, Q, C + 1)``."""
        return self.classifier(features)

    def forward_train(self, x: Tensor, targets: Tensor | None = None) -> QueryOutput:
        """The model's own loss and the matched queries of every supervised layer.

        Shape:
            x: ``(B, in_channels, H, W)``; targets ``(B, 2, H, W)`` (see
            :func:`segments_from_maps`) -> features ``(L * B * Q, D)``, feature_labels
            ``(L * B * Q,)``, loss ``()``.

        Raises:
            ValueError: no targets, or targets that are not ``(B, 2, H, W)``.
        """
        check_images(x, self.in_channels)
        if targets is None:
            raise ValueError("Mask2Former trains with its own loss: forward_train needs targets")
        mask_labels, class_labels = segments_from_maps(targets, ignore_index=self.ignore_index)
        with QueryCapture(self.hf_model, ignore_index=self.ignore_index) as queries:
            out = self.hf_model(x, mask_labels=mask_labels, class_labels=class_labels)
        features, labels = queries.matched()
        return QueryOutput(features, labels, out.loss)


# The Swin backbones: (embed_dim, depths, heads, window, image size) and the decoder sizes.
_ARCHITECTURES = {
    "tiny": (
        {"embed_dim": 32, "depths": [1, 1, 1, 1], "num_heads": [1, 2, 4, 8], "window_size": 4,
         "image_size": 64, "drop_path_rate": 0.0},
        {"num_queries": 20, "hidden_dim": 64, "mask_feature_size": 64, "feature_size": 64,
         "encoder_feedforward_dim": 128, "dim_feedforward": 128, "decoder_layers": 4,
         "encoder_layers": 2, "num_attention_heads": 4, "train_num_points": 256},
    ),
    "swin_t": (
        {"embed_dim": 96, "depths": [2, 2, 6, 2], "num_heads": [3, 6, 12, 24], "window_size": 7,
         "image_size": 224, "drop_path_rate": 0.3},
        {},  # Mask2FormerConfig's defaults: 100 queries, hidden 256, 10 decoder layers
    ),
}  # fmt: skip


def build_mask2former(
    variant: str,
    num_classes: int = 19,
    *,
    in_channels: int = 3,
    pretrained: str | os.PathLike[str] | None = None,
    config_overrides: Mapping[str, Any] | None = None,
    ignore_index: int = 255,
) -> HFMask2Former:
    """Mask2Former (Swin backbone) from a ``Mask2FormerConfig``, random init or a local folder.

    Args:
        variant: ``"tiny"`` (CPU-sized) or ``"swin_t"``.
        num_classes: classes ``C`` (``config.num_labels``; the class head has ``C + 1``).
        in_channels: image channels (the Swin's ``num_channels``).
        pretrained: a local ``save_pretrained`` folder (see :func:`.common.build_hf_model`).
        config_overrides: more ``Mask2FormerConfig`` fields (e.g. ``num_queries``).
        ignore_index: the semantic label of ignored pixels.

    Raises:
        ValueError / TypeError: bad arguments (named in the message).
        FileNotFoundError: ``pretrained`` is not a directory.
    """
    transformers = common.import_transformers()
    swin, decoder = _ARCHITECTURES[variant]
    backbone = transformers.SwinConfig(
        **swin, num_channels=check_int("in_channels", in_channels),
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )  # fmt: skip
    defaults = {
        "backbone_config": backbone,
        "use_pretrained_backbone": False,
        "num_labels": check_int("num_classes", num_classes),
        **decoder,
    }
    config = common.make_config(
        transformers.Mask2FormerConfig, defaults, config_overrides, "config_overrides"
    )
    model_class = transformers.Mask2FormerForUniversalSegmentation
    hf_model = common.build_hf_model(model_class, config, pretrained)
    return HFMask2Former(hf_model, ignore_index=ignore_index)


@register_model(task="segmentation", description="Mask2Former, a CPU-sized Swin (64 x 64 images).")
@inherit_signature(build_mask2former, bound=("variant",))
def mask2former_tiny(num_classes: int = 19, **kwargs: Any) -> HFMask2Former:
    """Mask2Former with a one-block-per-stage Swin (about 1.5 M parameters at 12 classes, 20
    queries, four decoder layers); see :func:`build_mask2former`."""
    return build_mask2former("tiny", num_classes, **kwargs)


@register_model(task="segmentation", description="Mask2Former with a Swin-T backbone.")
@inherit_signature(build_mask2former, bound=("variant",))
def mask2former_swin_t(num_classes: int = 19, **kwargs: Any) -> HFMask2Former:
    """Mask2Former, Swin-T backbone and the published decoder sizes; see
    :func:`build_mask2former`."""
    return build_mask2former("swin_t", num_classes, **kwargs)
