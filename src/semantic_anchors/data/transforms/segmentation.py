"""Segmentation pipelines: mmseg-style training augmentation and evaluation."""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import torch

from .common import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    _fit_scale,
    _pair,
    _resize,
    _Seeded,
    _to_numpy,
    _to_tensor,
)

__all__ = ["SegmentationTrainTransform", "SegmentationValTransform", "random_crop_box"]


def _target_to_numpy(target: torch.Tensor) -> np.ndarray:
    """``(H, W)`` labels, or ``(K, H, W)`` label maps (semantic labels first, e.g. then instance
    ids), as uint8 ``(H, W)`` / ``(H, W, K)``: every map moves with the same geometry."""
    if target.dim() == 3:
        if int(target.max()) > 255:
            raise ValueError(f"label maps must fit in uint8, got a value {int(target.max())}")
        return target.permute(1, 2, 0).numpy().astype(np.uint8)  # (H, W, K)
    return target.numpy().astype(np.uint8)  # (H, W)


def _target_to_tensor(mask: np.ndarray) -> torch.Tensor:
    out = torch.from_numpy(np.ascontiguousarray(mask).astype(np.int64))
    return out.permute(2, 0, 1).contiguous() if out.dim() == 3 else out  # (K, H, W) / (H, W)


def random_crop_box(
    mask: np.ndarray,
    crop_hw: tuple[int, int],
    rng: random.Random,
    cat_max_ratio: float = 0.75,
    ignore_index: int = 255,
    max_tries: int = 10,
) -> tuple[int, int, int, int]:
    """A random crop box, re-drawn (up to 10 times) while one class covers too much of it.

    Same rule as mmseg's ``RandomCrop(cat_max_ratio=...)``: a box is accepted when it holds more
    than one non-ignored class and the largest covers less than ``cat_max_ratio`` of the
    non-ignored pixels; after ``max_tries`` rejections the last box is used.

    Shape:
        - mask: ``(H, W)``

    Returns:
        ``(top, left, height, width)``; height / width are ``min(crop, image)``.
    """
    h, w = mask.shape
    ch, cw = min(crop_hw[0], h), min(crop_hw[1], w)

    def draw():
        return rng.randint(0, h - ch), rng.randint(0, w - cw)

    top, left = draw()
    if cat_max_ratio >= 1.0:
        return top, left, ch, cw
    for _ in range(max_tries):
        counts = np.bincount(
            mask[top : top + ch, left : left + cw].ravel(), minlength=256
        )  # (256,)
        counts[ignore_index] = 0
        if np.count_nonzero(counts) > 1 and counts.max() < cat_max_ratio * counts.sum():
            break
        top, left = draw()
    return top, left, ch, cw


def _photometric(channels: int):
    import albumentations as A

    # mmseg PhotoMetricDistortion: brightness +-32, contrast 0.5-1.5, saturation 0.5-1.5, hue +-18,
    # each with probability 0.5
    ops = [
        A.RandomBrightnessContrast(brightness_limit=32 / 255, contrast_limit=0, p=0.5),
        A.RandomBrightnessContrast(brightness_limit=0, contrast_limit=0.5, p=0.5),
    ]
    if channels == 3:
        ops += [
            A.ColorJitter(brightness=0, contrast=0, saturation=(0.5, 1.5), hue=0, p=0.5),
            A.HueSaturationValue(hue_shift_limit=18, sat_shift_limit=0, val_shift_limit=0, p=0.5),
        ]
    return ops


class SegmentationTrainTransform(_Seeded):
    """mmseg-style training pipeline: random rescale, cat-max-ratio crop, flip, photometric,
    normalize, pad (image with 0, mask with ignore).

    Args:
        crop_size: Output ``(height, width)`` (or one int).
        mean: Per-channel mean in ``[0, 1]`` units; its length sets the channel count (1 or 3).
        std: Per-channel std in ``[0, 1]`` units.
        scale_range: Random rescale ratio range (0.5 - 2.0).
        base_size: Optional ``(long, short)`` box the image is first fitted into keeping its aspect
            ratio (mmseg ``img_scale``, e.g. ``(2048, 1024)``); ``None`` rescales the raw size.
        cat_max_ratio: Maximum share of one class in a crop (0.75; 1 disables the check).
        hflip: Random horizontal flip with probability 0.5.
        photometric: mmseg photometric distortion (brightness, contrast, saturation, hue).
        ignore_index: Mask value of ignored / padded pixels.

    Shape:
        - image: ``(C, H, W)`` uint8 -> ``(C, crop_h, crop_w)`` float32
        - target: ``(H, W)`` int64 -> ``(crop_h, crop_w)`` int64; or ``(K, H, W)`` label maps
          (semantic labels first, e.g. instance ids second) -> ``(K, crop_h, crop_w)``, every
          map with the same geometry (padding: ``ignore_index``)
    """

    def __init__(
        self,
        crop_size: int | Sequence[int],
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        scale_range: tuple[float, float] = (0.5, 2.0),
        base_size: Sequence[int] | None = None,
        cat_max_ratio: float = 0.75,
        hflip: bool = True,
        photometric: bool = True,
        ignore_index: int = 255,
    ):
        import albumentations as A

        super().__init__()
        self.crop_size = _pair(crop_size, "crop_size")
        self.base_size = _pair(base_size, "base_size")
        lo, hi = scale_range
        if not 0 < lo <= hi:
            raise ValueError(f"`scale_range` must satisfy 0 < low <= high, got {scale_range}")
        if not 0 < cat_max_ratio <= 1:
            raise ValueError(f"`cat_max_ratio` must lie in (0, 1], got {cat_max_ratio}")
        self.scale_range = (float(lo), float(hi))
        self.cat_max_ratio = float(cat_max_ratio)
        self.ignore_index = int(ignore_index)
        self.channels = len(mean)
        ops = [A.HorizontalFlip(p=0.5)] if hflip else []
        ops += _photometric(self.channels) if photometric else []
        ops.append(A.Normalize(mean=tuple(mean), std=tuple(std), max_pixel_value=255.0))
        self.compose = A.Compose(ops)

    def _composes(self):
        return [self.compose]

    def __call__(self, image: torch.Tensor, target: torch.Tensor):
        self._reseed()
        img = _to_numpy(image)  # (H, W, C)
        mask = _target_to_numpy(target)  # (H, W) or (H, W, K)
        h, w = mask.shape[:2]
        factor = _fit_scale(h, w, self.base_size) * self._rng.uniform(*self.scale_range)
        img, mask = _resize(
            img, mask, (max(1, int(h * factor + 0.5)), max(1, int(w * factor + 0.5)))
        )
        semantic = mask if mask.ndim == 2 else mask[:, :, 0]  # the crop looks at classes only
        top, left, ch, cw = random_crop_box(
            semantic, self.crop_size, self._rng, self.cat_max_ratio, self.ignore_index
        )
        img = img[top : top + ch, left : left + cw]  # (ch, cw, C)
        mask = mask[top : top + ch, left : left + cw]  # (ch, cw[, K])
        out = self.compose(image=np.ascontiguousarray(img), mask=np.ascontiguousarray(mask))
        img, mask = out["image"], out["mask"]  # (ch, cw, C) float32, (ch, cw[, K]) uint8
        pad_h, pad_w = self.crop_size[0] - ch, self.crop_size[1] - cw
        if pad_h or pad_w:
            img = np.pad(img, ((0, pad_h), (0, pad_w), (0, 0)))  # (crop_h, crop_w, C)
            extra = ((0, 0),) if mask.ndim == 3 else ()
            mask = np.pad(mask, ((0, pad_h), (0, pad_w), *extra), constant_values=self.ignore_index)
        return _to_tensor(img), _target_to_tensor(mask)


class SegmentationValTransform(_Seeded):
    """Evaluation pipeline: optional keep-ratio rescale into ``base_size``, then normalize.

    When ``base_size`` is given the mask is rescaled too (nearest), so evaluation happens at the
    rescaled resolution.

    Shape:
        - image: ``(C, H, W)`` uint8 -> ``(C, H', W')`` float32
        - target: ``(H, W)`` int64 -> ``(H', W')`` int64; or ``(K, H, W)`` -> ``(K, H', W')``
    """

    def __init__(
        self,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        base_size: Sequence[int] | None = None,
    ):
        super().__init__()
        self.base_size = _pair(base_size, "base_size")
        self.mean = np.asarray(mean, dtype=np.float32) * 255.0  # (C,)
        self.inv_std = 1.0 / (np.asarray(std, dtype=np.float32) * 255.0)  # (C,)

    def __call__(self, image: torch.Tensor, target: torch.Tensor):
        img = _to_numpy(image)  # (H, W, C)
        mask = _target_to_numpy(target)  # (H, W) or (H, W, K)
        if self.base_size is not None:
            h, w = mask.shape[:2]
            f = _fit_scale(h, w, self.base_size)
            img, mask = _resize(img, mask, (max(1, int(h * f + 0.5)), max(1, int(w * f + 0.5))))
        img = (img.astype(np.float32) - self.mean) * self.inv_std  # (H', W', C)
        return _to_tensor(img), _target_to_tensor(mask)
