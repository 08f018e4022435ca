"""Weights in and out: loading pretrained checkpoints, exporting a trained model for inference.

* :func:`read_state_dict` / :func:`load_pretrained`: a local checkpoint (torchvision / mmcv
  format, or a run's own checkpoint) into a model, with a report of the keys that did not fit;
* :func:`save_exported` / :func:`load_exported`: one file holding a registered model's name,
  options, weights and (optionally) its semantic anchors;
* :mod:`.onnx` (imported on its own: it needs the ``onnx`` extra): :func:`~.onnx.export_onnx`,
  a model's inference forward as an ONNX graph, and :class:`~.onnx.OnnxModel` to run one.
"""

from .exported import EXPORT_FORMAT, load_exported, save_exported
from .pretrained import load_pretrained, read_state_dict

__all__ = ["EXPORT_FORMAT", "load_exported", "load_pretrained", "read_state_dict", "save_exported"]
