"""Models: a registry of classification and segmentation models with one contract.

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

from . import (
    hf,  # noqa: F401, E402  (registers the transformers models; imports transformers lazily)
    hrnet_models,  # noqa: F401, E402  (registers fcn_hr18/48, ocrnet_hr18/48)
)
from .backbones import (
    BasicBlock,
    Bottleneck,
    NormedLinear,
    ResNet,
    ResNetCifar,
    SmallCNN,
)
from .classifier import ClassificationModel
from .exported import load_exported, save_exported
from .heads import ASPPHead, DecodeHead, FCNHead
from .layers import ConvBNReLU
from .output import ModelOutput
from .pretrained import load_pretrained, read_state_dict
from .registry import ModelEntry, create_model, get_model_entry, list_models, register_model
from .segmentation_models import build_resnet_segmentor
from .segmentor import Segmentor

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
