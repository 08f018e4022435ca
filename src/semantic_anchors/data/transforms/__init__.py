"""Training and evaluation transforms for segmentation and classification.

A transform is a callable ``transform(image, target) -> (image, target)`` that takes what a dataset
returns with ``transform=None`` (a ``uint8`` image tensor ``(C, H, W)`` and an ``int64`` mask
``(H, W)`` or an ``int`` class index) and returns a normalized ``float32`` image tensor and the
target (a mask stays ``int64``, ignore = 255). Photometric / geometric operations come from
albumentations; only the mmseg-style crop with a maximum single-class ratio, which albumentations
lacks, is written here.

Randomness: every transform re-seeds its generators from ``torch.initial_seed()`` whenever that
changes, so DataLoader workers (which torch seeds with ``base_seed + worker_id``) never repeat each
other's augmentations and ``torch.manual_seed`` makes a run reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence

from .classification import ClassificationTransform
from .common import IMAGENET_MEAN, IMAGENET_STD, seed_albumentations
from .segmentation import SegmentationTrainTransform, SegmentationValTransform, random_crop_box

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ClassificationTransform",
    "SegmentationTrainTransform",
    "SegmentationValTransform",
    "build_transforms",
    "random_crop_box",
    "seed_albumentations",
]


def build_transforms(
    task: str,
    split: str = "train",
    *,
    crop_size: int | Sequence[int] | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    scale_range: tuple[float, float] = (0.5, 2.0),
    base_size: Sequence[int] | None = None,
    cat_max_ratio: float = 0.75,
    hflip: bool = True,
    photometric: bool = True,
    ignore_index: int = 255,
    padding: int = 4,
    random_resized_crop: bool = False,
    resize: int | None = None,
):
    """Build the standard training or evaluation transform of a task.

    Args:
        task: ``"segmentation"`` or ``"classification"``.
        split: ``"train"`` builds the augmenting pipeline; ``"val"`` / ``"test"`` only normalize
            (plus the optional resize / centre crop).
        crop_size: Segmentation train crop (required there); classification crop (default: the
            input size).
        mean: Per-channel mean in ``[0, 1]`` units (a dataset's ``mean``); 1 or 3 values.
        std: Per-channel std in ``[0, 1]`` units (a dataset's ``std``).
        scale_range: Segmentation random rescale range.
        base_size: Segmentation ``(long, short)`` keep-ratio box (mmseg ``img_scale``), for train
            and, when given, val.
        cat_max_ratio: Segmentation crop max single-class ratio.
        hflip: Random horizontal flip (train).
        photometric: Segmentation photometric distortion (train).
        ignore_index: Segmentation padding label.
        padding: Classification train padding before the random crop (CIFAR: 4).
        random_resized_crop: Classification train uses a random resized crop instead.
        resize: Classification val short-side resize before the centre crop.

    Returns:
        A callable ``transform(image, target) -> (float32 image (C, h, w), target)``.

    Raises:
        ValueError: If ``task`` / ``split`` are unknown, ``mean`` and ``std`` differ in length,
            or a size is invalid (for instance no ``crop_size`` for segmentation training).

    Example:
        >>> import torch
        >>> t = build_transforms("segmentation", "train", crop_size=64)
        >>> image = torch.zeros(3, 40, 50, dtype=torch.uint8)
        >>> img, mask = t(image, torch.zeros(40, 50, dtype=torch.long))
        >>> tuple(img.shape), tuple(mask.shape), img.dtype
        ((3, 64, 64), (64, 64), torch.float32)
    """
    if task not in ("segmentation", "classification"):
        raise ValueError(f"`task` must be 'segmentation' or 'classification', got {task!r}")
    if split not in ("train", "val", "test"):
        raise ValueError(f"`split` must be 'train', 'val' or 'test', got {split!r}")
    if len(mean) != len(std) or len(mean) not in (1, 3):
        raise ValueError(
            f"`mean` and `std` must both have 1 or 3 values, got {len(mean)} and {len(std)}"
        )
    if task == "segmentation":
        if split != "train":
            return SegmentationValTransform(mean, std, base_size)
        if crop_size is None:
            raise ValueError("`crop_size` is required for the segmentation training transform")
        return SegmentationTrainTransform(
            crop_size,
            mean,
            std,
            scale_range,
            base_size,
            cat_max_ratio,
            hflip,
            photometric,
            ignore_index,
        )
    return ClassificationTransform(
        split == "train", crop_size, mean, std, padding, hflip, random_resized_crop, resize
    )
