"""The config schema: the fixed sections (typed dataclasses), the open ones, their defaults.

A config is a nested dict. Sections with a fixed schema (:data:`SECTIONS`: ``data``,
``optimizer``, ``trainer``, ``eval``, ``finetune``) have one dataclass each, whose field
annotations are the types :func:`~semantic_anchors.train.config_checks.validate_config` checks and
whose defaults are :data:`DEFAULTS`; the open sections (:data:`OPEN_SECTIONS`: ``model``,
``regularizer``, ``loss``) hold a ``name`` plus the keyword arguments of what they build. Both the
loader (:mod:`semantic_anchors.train.config`) and the checks
(:mod:`semantic_anchors.train.config_checks`) read the schema from here.
"""

from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass, field, fields
from typing import Any

__all__ = [
    "DEFAULTS",
    "OPEN_SECTIONS",
    "SECTIONS",
    "TOP_LEVEL",
    "DataConfig",
    "EvalConfig",
    "FinetuneConfig",
    "OptimizerConfig",
    "TrainerConfig",
    "unknown_key_error",
]


@dataclass
class DataConfig:
    name: str = "synthlt"
    root: str | None = None
    options: dict = field(default_factory=dict)  # build_dataset(name, root, split, **options)
    train_options: dict = field(default_factory=dict)  # extra options for the train split only
    val_options: dict = field(default_factory=dict)  # extra options for the val split only
    val_split: str = "val"
    # Hold out this fraction of the training items and validate on them instead of val_split
    # (hyper-parameter tuning, semantic_anchors.data.holdout); None: off.
    holdout: float | None = None
    holdout_seed: int = 0  # the split's seed (the same split for every run seed)
    batch_size: int = 16
    val_batch_size: int = 16
    num_workers: int = 2
    crop_size: int | list[int] | None = None  # segmentation train crop; None = image size
    transforms: dict = field(default_factory=dict)  # build_transforms(task, split, **transforms)
    # Long-tail training options (classification only; docs/longtail.md). None: off.
    mixup_alpha: float | None = None  # mixup with lam ~ Beta(alpha, alpha) (MiSLAS stage 1: 1.0)
    sampler: str | None = None  # None: every item equally often; "class-balanced": every class
    # (2, H, W) targets (semantic labels, instance ids) for models that train on segments
    # (Mask2Former); the dataset is generated with its instances (data.instances.InstanceMaps).
    instances: bool = False


@dataclass
class OptimizerConfig:
    name: str = "sgd"  # sgd | adamw
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    poly_power: float = 0.9
    min_lr: float = 1e-4  # as mmseg's poly schedule
    warmup_steps: int = 0
    head_lr_mult: float = 1.0  # learning-rate multiplier for the head (mmseg uses 10 with AdamW)


@dataclass
class TrainerConfig:
    max_steps: int = 1000
    stop_at_step: int | None = None  # end this invocation early (resumable), schedule unchanged
    val_every: int = 500  # steps between validations (and checkpoints)
    checkpoint_every: int | None = None  # also save last.ckpt every N steps (None: only at val)
    checkpoint_minutes: float | None = 10.0  # and after N minutes of training since the last save
    agree_every: int = 10  # under DDP: ranks agree on signals / timed saves every N steps
    save_best: bool = False  # also keep best.ckpt, the checkpoint with the best validation metric
    keep_checkpoints: int = 2  # last.ckpt and the previous ones (last-1.ckpt, ...), rotated
    # Non-finite loss / gradient / state (train/divergence.py): stop (default) or skip the step;
    # skip stops the run past max_skip_fraction * max_steps skipped steps.
    on_nonfinite: str = "stop"
    max_skip_fraction: float = 0.05
    threads: int | None = None  # torch CPU threads per process (None: torch's default)
    accelerator: str = "auto"
    devices: int | str = 1
    strategy: str = "auto"
    num_nodes: int = 1
    precision: int | str = "32-true"  # one of PRECISIONS (Lightning's values)
    sync_batchnorm: bool | None = None  # None: on for segmentation under DDP
    deterministic: bool = False
    log_every: int = 10
    progress_bar: bool = True
    limit_val_batches: int | float = 1.0  # an int counts batches, a float is a fraction
    gradient_clip_val: float | None = None


@dataclass
class EvalConfig:
    mode: str = "whole"  # whole | slide
    crop_size: int | list[int] | None = None
    stride: int | list[int] | None = None
    # Anchor-aware inference (semantic_anchors.anchor_inference; needs regularizer.name=sar):
    # logits + anchor_fusion * anchor_logits(features, semantic anchors); 0 = the plain model.
    anchor_fusion: float = 0.0
    anchor_metric: str = "l2"  # l2 | cosine
    anchor_temperature: float | None = None  # None: D for l2, 0.1 for cosine


@dataclass
class FinetuneConfig:
    """Stage 2 of a two-stage method (semantic_anchors.train.finetune; docs/longtail.md)."""

    init_from: str | None = None  # a run folder whose model.* weights (last.ckpt) are loaded
    train_only: list[str] | None = None  # parameter-name prefixes trained; the rest frozen
    freeze_bn: bool | None = None  # BN outside train_only in eval mode (None: true)
    calibration: str | None = None  # a logit calibration trained on top: disalign | lws
    calibration_options: dict | None = None  # its keyword arguments
    calibration_lr_mult: float | None = None  # its learning rate / optimizer.lr (None: 1)


SECTIONS = {
    "data": DataConfig,
    "optimizer": OptimizerConfig,
    "trainer": TrainerConfig,
    "eval": EvalConfig,
    "finetune": FinetuneConfig,
}
OPEN_SECTIONS = {
    "model": {"name": "fcn_small"},
    "regularizer": {"name": "none"},
    "loss": {"name": "ce"},
}
TOP_LEVEL = ("seed", "name", "description", *SECTIONS, *OPEN_SECTIONS)


def _defaults() -> dict[str, Any]:
    out: dict[str, Any] = {"seed": 0, "name": "run", "description": ""}
    for key, cls in SECTIONS.items():
        out[key] = {f.name: copy.deepcopy(getattr(cls(), f.name)) for f in fields(cls)}
    for key, value in OPEN_SECTIONS.items():
        out[key] = dict(value)
    return out


DEFAULTS = _defaults()


def unknown_key_error(key: str, valid: list[str], where: str) -> ValueError:
    """The ``ValueError`` for ``where + key``, with close matches among ``valid`` and all of them."""
    close = difflib.get_close_matches(key, valid, n=3)
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    return ValueError(f"unknown config key {where + key!r}{hint}; valid keys: {sorted(valid)}")
