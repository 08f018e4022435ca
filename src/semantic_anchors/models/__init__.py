"""Models: a registry of classification and segmentation models with one contract.

Grouped by role: ``backbones/`` (classification networks, headless for segmentation),
``heads/`` (decode heads), ``segmentors/`` (the dense models and the builders of the registered
segmentors), ``hf/`` (the ``transformers`` adapters, imported lazily), ``io/`` (pretrained
loading, export); ``registry``, ``classifier`` (the classification base), ``output`` and
``layers`` are what they all share.

Every model has ``num_classes``, ``feat_dim``, ``dense``, ``classifier`` (the final ``nn.Linear``
or 1x1 ``nn.Conv2d``), ``aux_loss_weight`` and

* ``forward_features(x)``: features right before dropout / classifier, ``(B, D)`` or
  ``(B, D, h, w)`` at ``output_stride``;
* ``forward_head(features)``: logits at feature resolution;
* ``forward(x)``: logits (segmentation: upsampled to the input size);
* ``forward_train(x)``: :class:`ModelOutput` ``(features, logits, aux_logits)`` from one pass.

Example:
    >>> import torch
    >>> from semantic_anchors.models import create_model
    >>> model = create_model("fcn_small", num_classes=5)
    >>> out = model.forward_train(torch.randn(2, 3, 64, 64))
    >>> out.features.shape, out.logits.shape
    (torch.Size([2, 64, 8, 8]), torch.Size([2, 5, 64, 64]))
"""

from semantic_anchors._moved import keep_old_paths

from . import hf  # noqa: F401  (registers the transformers models; imports transformers lazily)
from .backbones import (
    BasicBlock,
    Bottleneck,
    NormedLinear,
    ResNet,
    ResNetCifar,
    SmallCNN,
)
from .classifier import ClassificationModel
from .heads import ASPPHead, DecodeHead, FCNHead
from .io import load_exported, load_pretrained, read_state_dict, save_exported
from .layers import ConvBNReLU
from .output import ModelOutput
from .registry import ModelEntry, create_model, get_model_entry, list_models, register_model
from .segmentors import (
    Segmentor,
    build_resnet_segmentor,  # noqa: F401  (registers the segmentors)
)

# The paths of the modules before they were grouped by role (deprecated; they warn).
_OLD = "semantic_anchors.models."
keep_old_paths({
    _OLD + "segmentor": _OLD + "segmentors.segmentor",
    _OLD + "dense": _OLD + "segmentors.dense",
    _OLD + "multi_level_segmentor": _OLD + "segmentors.multi_level",
    _OLD + "protoseg": _OLD + "segmentors.protoseg",
    _OLD + "segmentation_models": _OLD + "segmentors.resnet",
    _OLD + "hrnet_models": _OLD + "segmentors.hrnet",
    _OLD + "hf_common": _OLD + "hf.common",
    _OLD + "hf_classifiers": _OLD + "hf.classifiers",
    _OLD + "hf_dense": _OLD + "hf.dense",
    _OLD + "hf_segmentors": (_OLD + "hf.segformer", _OLD + "hf.upernet"),
    _OLD + "hf_upernet": _OLD + "hf.upernet",
    _OLD + "pretrained": _OLD + "io.pretrained",
    _OLD + "exported": _OLD + "io.exported",
})  # fmt: skip

__all__ = [
    "ASPPHead",
    "BasicBlock",
    "Bottleneck",
    "ClassificationModel",
    "ConvBNReLU",
    "DecodeHead",
    "FCNHead",
    "ModelEntry",
    "ModelOutput",
    "NormedLinear",
    "ResNet",
    "ResNetCifar",
    "Segmentor",
    "SmallCNN",
    "build_resnet_segmentor",
    "create_model",
    "get_model_entry",
    "list_models",
    "load_exported",
    "load_pretrained",
    "read_state_dict",
    "register_model",
    "save_exported",
]
