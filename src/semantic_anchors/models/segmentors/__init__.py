"""Segmentors: the dense models of the zoo and the builders of the registered ones.

* :class:`DenseModel` (:mod:`.dense`): what every segmentor shares (``forward`` upsamples
  ``forward_head(forward_features(x))`` to the input);
* :class:`Segmentor` (:mod:`.segmentor`): backbone + decode head (+ auxiliary head), built by
  :mod:`.resnet` (``fcn_*`` / ``deeplabv3_*`` on ResNetV1c, ``fcn_small``);
* :class:`MultiLevelSegmentor` (:mod:`.multi_level`): a head on every backbone level, or a
  cascade of two, built by :mod:`.hrnet` (``fcn_hr*``, ``ocrnet_hr*``);
* :class:`ProtoSegSegmentor` (:mod:`.protoseg`): any segmentor with ProtoSeg's prototype
  classifier in place of its own (``model.prototype_head=protoseg``).
"""

from .dense import DenseModel
from .hrnet import build_hrnet_segmentor
from .multi_level import MultiLevelSegmentor
from .protoseg import PROTOTYPE_HEADS, ProtoSegSegmentor, prototype_head_wrapper
from .resnet import build_resnet_segmentor
from .segmentor import Segmentor

__all__ = [
    "PROTOTYPE_HEADS",
    "DenseModel",
    "MultiLevelSegmentor",
    "ProtoSegSegmentor",
    "Segmentor",
    "build_hrnet_segmentor",
    "build_resnet_segmentor",
    "prototype_head_wrapper",
]
