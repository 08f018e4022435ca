"""Helpers shared by the transforms: tensor <-> array conversion, resizing, seeding."""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "seed_albumentations"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _pair(value: int | Sequence[int] | None, name: str) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, int):
        value = (value, value)
    value = tuple(int(v) for v in value)
    if len(value) != 2 or min(value) < 1:
        raise ValueError(
            f"`{name}` must be an int or (height, width) of positive ints, got {value}"
        )
    return value


def _to_numpy(image: torch.Tensor) -> np.ndarray:
    """``(C, H, W)`` uint8 tensor -> contiguous ``(H, W, C)`` uint8 array."""
    if not isinstance(image, torch.Tensor) or image.ndim != 3 or image.dtype != torch.uint8:
        got = f"{type(image).__name__}" + (
            f"(shape={tuple(image.shape)}, dtype={image.dtype})"
            if isinstance(image, torch.Tensor)
            else ""
        )
        raise ValueError(f"`image` must be a uint8 tensor of shape (C, H, W), got {got}")
    return np.ascontiguousarray(image.permute(1, 2, 0).numpy())  # (H, W, C)


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    if image.ndim == 2:  # cv2 drops a single channel
        image = image[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))  # (C, H, W)


def _resize(image: np.ndarray, mask: np.ndarray | None, size_hw: tuple[int, int]):
    import cv2

    h, w = size_hw
    if image.shape[:2] == (h, w):
        return image, mask
    out = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)  # (h, w[, C])
    if out.ndim == 2:
        out = out[:, :, None]  # (h, w, 1)
    if mask is not None:
        mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST)  # (h, w)
    return out, mask


def _fit_scale(h: int, w: int, base_size: tuple[int, int] | None) -> float:
    """mmseg keep-ratio rescale: the largest factor that fits (H, W) inside (long, short)."""
    if base_size is None:
        return 1.0
    long_side, short_side = max(base_size), min(base_size)
    return min(long_side / max(h, w), short_side / min(h, w))


def seed_albumentations(compose, seed: int) -> None:
    """Give ``compose`` and every transform inside it ONE shared pair of generators seeded by ``seed``.

    ``Compose.set_random_seed`` gives every transform its own generator with the same seed, so
    right after a re-seed all ``p=0.5`` transforms fire together; a shared stream keeps their
    draws independent, and building two generators instead of one per transform is ~10x cheaper
    when a run re-seeds for every sample.
    """
    np_rng, py_rng = np.random.default_rng(seed), random.Random(seed)
    stack = [compose]
    while stack:
        node = stack.pop()
        node.random_generator, node.py_random = np_rng, py_rng
        stack.extend(getattr(node, "transforms", []))


class _Seeded:
    """Re-seeds the python and albumentations generators when ``torch.initial_seed()`` changes."""

    def __init__(self):
        self._rng = random.Random(0)
        self._seed: int | None = None

    def _composes(self):
        return []

    def _reseed(self):
        seed = torch.initial_seed() % 2**32
        if seed != self._seed:
            self._seed = seed
            self._rng.seed(seed)
            for i, compose in enumerate(self._composes()):
                seed_albumentations(compose, (seed + 7919 * (i + 1)) % 2**32)

    def __getstate__(self):
        # a fresh worker must re-seed itself, so never ship "already seeded"
        state = self.__dict__.copy()
        state["_seed"] = None
        return state
