"""Datasets, transforms and long-tail tools.

``build_dataset(name, root=None, split="train", transform=None, **kwargs)`` creates any registered
dataset (``list_datasets()``): the generated ``synthlt`` default, Fashion-MNIST based long-tailed
sets, and readers of the paper's datasets in their standard layouts. ``build_transforms`` gives the
standard augmentation pipelines; :mod:`~semantic_anchors.data.longtail` the long-tail profile and
head / body / tail groups; :mod:`~semantic_anchors.data.holdout` the held-out part of a training
set that hyper-parameters are tuned on (``data.holdout``).
"""

from .holdout import HoldoutSubset, holdout_indices
from .longtail import head_body_tail, longtail_counts, longtail_subsample
from .registry import build_dataset, list_datasets, register_dataset
from .transforms import IMAGENET_MEAN, IMAGENET_STD, build_transforms

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "HoldoutSubset",
    "build_dataset",
    "build_transforms",
    "head_body_tail",
    "holdout_indices",
    "list_datasets",
    "longtail_counts",
    "longtail_subsample",
    "register_dataset",
]
