"""Classification pipelines: CIFAR-style pad-and-crop or random-resized-crop, and evaluation."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .common import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    _pair,
    _Seeded,
    _to_numpy,
    _to_tensor,
    seed_albumentations,
)

__all__ = ["ClassificationTransform"]


class ClassificationTransform(_Seeded):
    """Classification pipeline.

    Train, CIFAR style (default): pad by ``padding`` (zeros), random crop back to ``crop_size``
    (the image size when ``None``), horizontal flip, normalize. Train with
    ``random_resized_crop=True`` (ImageNet / CUB style): random resized crop to ``crop_size``,
    flip, normalize. Val: optional resize of the short side to ``resize`` and centre crop to
    ``crop_size``, then normalize.

    Shape:
        - image: ``(C, H, W)`` uint8 -> ``(C, crop_h, crop_w)`` float32; target: ``int`` unchanged
    """

    def __init__(
        self,
        train: bool,
        crop_size: int | Sequence[int] | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        padding: int = 4,
        hflip: bool = True,
        random_resized_crop: bool = False,
        resize: int | None = None,
    ):
        super().__init__()
        if random_resized_crop and crop_size is None:
            raise ValueError("`crop_size` is required when `random_resized_crop=True`")
        if padding < 0:
            raise ValueError(f"`padding` must be >= 0, got {padding}")
        self.train = train
        self.crop_size = _pair(crop_size, "crop_size")
        self.mean, self.std = tuple(mean), tuple(std)
        self.padding, self.hflip = int(padding), hflip
        self.random_resized_crop, self.resize = random_resized_crop, resize
        self._by_size: dict[tuple[int, int], object] = {}  # one Compose per input size

    def _build(self, hw: tuple[int, int]):
        import albumentations as A
        import cv2

        crop = self.crop_size or hw
        ops = []
        if self.train and self.random_resized_crop:
            ops.append(A.RandomResizedCrop(size=crop))
        elif self.train:
            ops += [
                A.PadIfNeeded(
                    min_height=hw[0] + 2 * self.padding,
                    min_width=hw[1] + 2 * self.padding,
                    border_mode=cv2.BORDER_CONSTANT,
                    fill=0,
                ),
                A.RandomCrop(height=crop[0], width=crop[1], pad_if_needed=True, fill=0),
            ]
        else:
            if self.resize is not None:
                ops.append(A.SmallestMaxSize(max_size=int(self.resize)))
            if self.crop_size is not None:
                ops.append(A.CenterCrop(height=crop[0], width=crop[1], pad_if_needed=True))
        if self.train and self.hflip:
            ops.append(A.HorizontalFlip(p=0.5))
        ops.append(A.Normalize(mean=self.mean, std=self.std, max_pixel_value=255.0))
        compose = A.Compose(ops)
        seed_albumentations(compose, self._rng.randrange(2**32))
        return compose

    def _composes(self):
        return list(self._by_size.values())

    def __call__(self, image: torch.Tensor, target: int):
        self._reseed()
        img = _to_numpy(image)  # (H, W, C)
        hw = img.shape[:2]
        if hw not in self._by_size:
            self._by_size[hw] = self._build(hw)
            # Seed the new pipeline as _reseed seeds every pipeline, from this sample's seed: the
            # first image a fresh transform serves (a resumed run) is augmented as in a running one.
            self._seed = None
            self._reseed()
        out = self._by_size[hw](image=img)["image"]  # (h, w, C) float32
        return _to_tensor(out), target
