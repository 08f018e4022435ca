"""Datasets, transforms and long-tail tools.

``build_dataset(name, root=None, split="train", transform=None, **kwargs)`` creates any registered
dataset (``list_datasets()``): the generated ``synthlt`` default, Fashion-MNIST based long-tailed
sets, and readers of the paper's datasets in their standard layouts. ``build_transforms`` gives the
standard augmentation pipelines; :mod:`~semantic_anchors.data.longtail` the long-tail profile and
head / body / tail groups; :mod:`~semantic_anchors.data.holdout` the held-out part of a training
set that hyper-parameters are tuned on (``data.holdout``). The generated scene datasets give
per-object instances with ``with_instances=True`` (:mod:`~semantic_anchors.data.instances`), as
Mask2Former / DETR targets (:mod:`~semantic_anchors.data.targets`) or a COCO json
(:mod:`~semantic_anchors.data.coco`).
"""

from .coco import coco_dict, write_coco
from .holdout import HoldoutSubset, holdout_indices
from .instances import MIN_INSTANCE_PIXELS, SceneInstances
from .longtail import head_body_tail, longtail_counts, longtail_subsample
from .registry import build_dataset, list_datasets, register_dataset
from .targets import InstanceTargets, collate_instances, detr_target, mask2former_target
from .transforms import IMAGENET_MEAN, IMAGENET_STD, build_transforms

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MIN_INSTANCE_PIXELS",
    "HoldoutSubset",
    "InstanceTargets",
    "SceneInstances",
    "build_dataset",
    "build_transforms",
    "coco_dict",
    "collate_instances",
    "detr_target",
    "head_body_tail",
    "holdout_indices",
    "list_datasets",
    "longtail_counts",
    "longtail_subsample",
    "mask2former_target",
    "register_dataset",
    "write_coco",
]
