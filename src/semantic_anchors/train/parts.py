"""The parts an :class:`~semantic_anchors.train.module.AnchorModule` trains, built from a config.

:func:`build_parts` is the one place that turns a resolved config and the training set's
``data_info`` into a model, a regularizer, a loss, an optional stage-2 calibration and the
validation metrics, with the checks that tie them together (a segmentation model for a
segmentation dataset, text-anchor options only with text anchors, ProtoSeg's head with its
regularizer). It needs no Lightning and no run folder, so each rule can be tested alone.
The parts are built in a fixed order (model, regularizer, loss, calibration): each draws its
initial weights from the global generator, so the order is part of a run's reproducibility.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from semantic_anchors.losses import build_loss
from semantic_anchors.metrics import ClassificationMetrics, SegmentationMetrics
from semantic_anchors.models import create_model
from semantic_anchors.models.segmentors import ProtoSegSegmentor
from semantic_anchors.regularizers.registry import build_regularizer
from semantic_anchors.text_anchors import TextAnchorCache, default_prompt
from semantic_anchors.train.finetune import check_batch_options, config_calibration

__all__ = [
    "VALIDATE_STEPS",
    "ModuleParts",
    "build_parts",
    "text_anchor_cache",
    "uses_text_anchors",
]

VALIDATE_STEPS = 10
"""Training steps whose regularizer inputs are checked (finite, labels in range) unless
``regularizer.validate`` says otherwise (``true``: every step, ``false``: none)."""


@dataclass
class ModuleParts:
    """What one training run optimises and measures (see :func:`build_parts`)."""

    model: nn.Module
    regularizer: nn.Module
    criterion: nn.Module
    calibration: nn.Module | None
    val_metrics: nn.Module
    monitor: str
    """The validation metric that names the best checkpoint (``val/mIoU`` or ``val/top1``)."""


def _options(section: dict) -> tuple[str, dict]:
    options = dict(section)
    return options.pop("name"), options


def uses_text_anchors(config: dict) -> bool:
    """Whether the config's regularizer takes text anchors (``regularizer.anchors: text``)."""
    return config["regularizer"].get("anchors") == "text"


def text_anchor_cache(config: dict, data_info: dict, cache_dir: str | Path) -> TextAnchorCache:
    """The cache of a config's text anchors: its ``text_prompt`` (default by task), its
    ``text_model`` (default: the offline package) and the dataset's class names."""
    reg = config["regularizer"]
    prompt = reg.get("text_prompt") or default_prompt(data_info["task"])
    return TextAnchorCache(
        cache_dir, data_info["class_names"], prompt=prompt, model=reg.get("text_model")
    )


def build_parts(config: dict, data_info: dict, anchors: torch.Tensor | None = None) -> ModuleParts:
    """Build the parts of a run from its resolved config.

    Args:
        config: the resolved experiment config (see :mod:`semantic_anchors.train.config`).
        data_info: ``task``, ``num_classes``, ``in_channels``, ``class_names``, ``groups``,
            ``class_frequencies`` and ``ignore_index`` of the training set.
        anchors: with ``regularizer.anchors: text``, the ``(C, T)`` text anchors (a run's
            cached ones, or a checkpoint's); computed from the text model when ``None``.

    Raises:
        ValueError: a model of the other task than the dataset's, text-anchor options without
            text anchors, ProtoSeg's head without its regularizer, or a bad option of any part.
    """
    task, num_classes = data_info["task"], data_info["num_classes"]
    ignore_index = data_info["ignore_index"]
    model_name, model_options = _options(config["model"])
    model_options.setdefault("in_channels", data_info["in_channels"])
    model = create_model(model_name, num_classes=num_classes, **model_options)
    if bool(model.dense) != (task == "segmentation"):
        raise ValueError(
            f"model {model_name!r} is a {'segmentation' if model.dense else 'classification'}"
            f" model but dataset {config['data']['name']!r} is a {task} dataset"
        )
    if getattr(model, "owns_loss", False):
        _check_own_loss(config, model_name)
    regularizer = _regularizer(config, data_info, model, anchors)
    loss_name, loss_options = _options(config["loss"])
    criterion = build_loss(
        loss_name, num_classes=num_classes, class_frequencies=data_info["class_frequencies"],
        ignore_index=ignore_index, **loss_options,
    )  # fmt: skip
    # Long-tail options (docs/longtail.md): data.mixup_alpha / data.sampler (classification)
    # and a stage-2 logit calibration.
    check_batch_options(config, task)
    calibration = config_calibration(config, model)
    groups = data_info["groups"]
    if task == "segmentation":
        metrics: nn.Module = SegmentationMetrics(num_classes, ignore_index, groups)
        monitor = "val/mIoU"
    else:
        metrics, monitor = ClassificationMetrics(num_classes, groups), "val/top1"
    return ModuleParts(model, regularizer, criterion, calibration, metrics, monitor)


# What a model that trains with its own loss (a query-based one) supports.
_OWN_LOSS_REGULARIZERS = ("none", "sar")


def _check_own_loss(config: dict, model_name: str) -> None:
    """A query-based model trains with its own loss (matching, class CE, mask and dice): the
    config's loss, stage-2 options and regularizers other than SAR do not apply to it."""
    loss = config["loss"]
    if loss.get("name") != "ce" or len(loss) > 1:
        raise ValueError(
            f"model {model_name!r} trains with its own loss (Hungarian matching, class CE, mask "
            f"and dice losses); loss={dict(loss)} does not apply: leave loss.name=ce"
        )
    reg = config["regularizer"]["name"]
    if reg not in _OWN_LOSS_REGULARIZERS:
        raise ValueError(
            f"model {model_name!r} is query-based: regularizer.name={reg!r} is not supported on "
            f"its queries (supported: {list(_OWN_LOSS_REGULARIZERS)})"
        )
    finetune = config.get("finetune") or {}
    if finetune.get("calibration") is not None or config["eval"].get("anchor_fusion"):
        raise ValueError(
            f"model {model_name!r} is query-based: finetune.calibration and eval.anchor_fusion "
            "need per-pixel logits of a classifier and do not apply"
        )


def _regularizer(config: dict, data_info: dict, model: nn.Module, anchors) -> nn.Module:
    reg_name, reg_options = _options(config["regularizer"])
    text_keys = {k: reg_options.pop(k) for k in ("text_prompt", "text_model") if k in reg_options}
    if uses_text_anchors(config):
        if anchors is None:  # no run folder: embed the class names now
            anchors = text_anchor_cache(config, data_info, Path()).compute()
        reg_options["anchors"] = anchors
    elif text_keys:
        raise ValueError(
            f"regularizer.{'/'.join(text_keys)} only apply with regularizer.anchors=text, got "
            f"anchors={reg_options.get('anchors', 'normal')!r}"
        )
    if reg_name != "none":  # the dataset's ignore value (a regularizer refuses a real class)
        reg_options.setdefault("ignore_index", data_info["ignore_index"])
        # Check inputs (a device sync) on the first steps only: a step is then sync-free.
        reg_options.setdefault("validate", VALIDATE_STEPS)
    dense = model.dense
    if getattr(model, "owns_loss", False) and reg_name != "none":
        dense = False  # the regularizer sees (N, D) query embeddings with their labels
        if getattr(model, "no_object", False):
            reg_options.setdefault("no_object", True)  # a class head of C + 1 outputs
    regularizer = build_regularizer(
        reg_name, data_info["num_classes"], model.feat_dim, dense=dense, **reg_options
    )
    if isinstance(model, ProtoSegSegmentor) and reg_name != "protoseg":
        raise ValueError(
            "model.prototype_head=protoseg needs regularizer.name=protoseg (its losses and the "
            f"prototype update; without it the prototypes never move), got {reg_name!r}"
        )
    return regularizer
