"""How a run's model is used on new images: its eval-time preprocessing and inference mode.

A run evaluates through its dataset's evaluation transform (normalised with the dataset's ``mean``
/ ``std`` or those of ``data.transforms``; a segmentation run may rescale into
``data.transforms.base_size``, a classification run resize and centre-crop) and in the mode of its
``eval`` section (``whole`` or ``slide`` with ``eval.crop_size`` / ``eval.stride``).
:func:`inference_settings` writes that down as a plain, JSON-serialisable dict, which
``semantic-anchors export`` stores in both its file formats, so that ``semantic-anchors
predict`` treats an image as the run's evaluation did, from a run folder, an exported file or an
ONNX file alike.

The dict::

    {"task": "segmentation", "num_classes": 5, "class_names": [...], "in_channels": 3,
     "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25],   # [0, 1] units, as build_transforms
     "transforms": {"base_size": None},                     # the evaluation transform's options
     "eval": {"mode": "whole", "crop_size": None, "stride": None}}
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["SETTINGS_KEYS", "check_settings", "image_transform", "inference_settings"]

SETTINGS_KEYS = ("task", "num_classes", "class_names", "in_channels", "mean", "std", "transforms",
                 "eval")  # fmt: skip
# The options of build_transforms that its evaluation transform reads, by task.
_EVAL_OPTIONS = {"segmentation": ("base_size",), "classification": ("crop_size", "resize")}


def inference_settings(config: dict, data_info: dict) -> dict[str, Any]:
    """The settings of a run (its resolved ``config`` and its checkpoint's ``data_info``).

    The dataset's ``mean`` / ``std`` are its class's: no data is read.

    Raises:
        ValueError: the config names an unknown dataset.
    """
    from semantic_anchors.data.registry import DATASETS

    task = data_info["task"]
    dataset = DATASETS.entry(config["data"]["name"]).obj  # (an unknown name: the valid ones)
    transforms = dict(config["data"].get("transforms") or {})
    if task == "classification" and config["data"].get("crop_size") is not None:
        transforms.setdefault("crop_size", config["data"]["crop_size"])
    evaluation = config["eval"]
    return {
        "task": task, "num_classes": int(data_info["num_classes"]),
        "class_names": list(data_info.get("class_names") or []),
        "in_channels": int(data_info["in_channels"]),
        "mean": [float(v) for v in transforms.get("mean", dataset.mean)],
        "std": [float(v) for v in transforms.get("std", dataset.std)],
        "transforms": {k: transforms.get(k) for k in _EVAL_OPTIONS[task]},
        "eval": {k: evaluation.get(k) for k in ("mode", "crop_size", "stride")},
    }  # fmt: skip


def check_settings(settings: Any, where: str) -> dict[str, Any]:
    """``settings`` if it has every key of :data:`SETTINGS_KEYS`.

    Raises:
        ValueError: it is missing or lacks keys (``where`` names the file it came from).
    """
    missing = [k for k in SETTINGS_KEYS if not isinstance(settings, dict) or k not in settings]
    if missing:
        raise ValueError(
            f"{where} holds no inference settings ({', '.join(missing)} missing): it was exported "
            "before they were stored; export the run again with `semantic-anchors export`"
        )
    return settings


def image_transform(settings: dict[str, Any]) -> Callable[[torch.Tensor], torch.Tensor]:
    """The run's evaluation transform of one image.

    Shape:
        ``(C, H, W)`` uint8 -> ``(C, h, w)`` float32 (``(h, w) = (H, W)`` unless the run's
        transform rescales or crops).
    """
    from semantic_anchors.data import build_transforms

    task = settings["task"]
    options = {k: v for k, v in settings["transforms"].items() if v is not None}
    transform = build_transforms(task, "val", mean=settings["mean"], std=settings["std"], **options)

    def apply(image: torch.Tensor) -> torch.Tensor:
        if task == "segmentation":
            dummy = torch.zeros(image.shape[-2:], dtype=torch.int64)  # (H, W): no target here
            return transform(image, dummy)[0]
        return transform(image, 0)[0]

    return apply
