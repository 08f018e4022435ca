"""The dataset contract every reader and generator follows.

An item is ``(image, target)``: with ``transform=None`` the image is a ``uint8`` tensor
``(C, H, W)`` (``C`` = 3 or 1) and the target an ``int64`` mask ``(H, W)`` (ignore = 255) for
segmentation or a python ``int`` for classification; with a transform, ``transform(image,
target)`` is returned. Every dataset carries its class names, its training-split class
frequencies (also on its val / test split objects) and the head / body / tail groups derived from
them, so training, metrics and reports agree.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..longtail import head_body_tail, longtail_counts, longtail_subsample
from ..transforms import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["BaseDataset", "LongTailSubset", "cached_frequencies", "count_classes", "resolve_root"]

# training-split statistics, computed once per process and dataset configuration
_FREQUENCY_CACHE: dict[Hashable, list[int]] = {}


def cached_frequencies(key: Hashable, compute: Callable[[], list[int]]) -> list[int]:
    """Return ``compute()``, memoised in-process under ``key``."""
    if key not in _FREQUENCY_CACHE:
        _FREQUENCY_CACHE[key] = [int(v) for v in compute()]
    return list(_FREQUENCY_CACHE[key])


def count_classes(labels: Iterable[np.ndarray], num_classes: int) -> list[int]:
    """Per-class counts of labels ``0 .. C-1`` over arrays of labels (ignore / other values skipped).

    Shape:
        - each item of ``labels``: any shape, integer values
        - output: ``C`` counts
    """
    total = np.zeros(num_classes, dtype=np.int64)  # (C,)
    for arr in labels:
        flat = np.asarray(arr).ravel()
        flat = flat[(flat >= 0) & (flat < num_classes)]
        total += np.bincount(flat, minlength=num_classes)[:num_classes]
    return total.tolist()


def resolve_root(root, candidates: Iterable[str], marker: str, layout: str) -> Path:
    """Find the dataset folder: ``root`` itself or ``root / candidate`` holding ``marker``.

    Raises:
        FileNotFoundError: Naming ``root`` and the expected layout when nothing matches.
    """
    if root is None:
        raise FileNotFoundError(
            f"`root` is required: pass the folder holding the dataset; expected layout:\n{layout}"
        )
    base = Path(root).expanduser()
    for folder in (base, *(base / c for c in candidates)):
        if (folder / marker).exists():
            return folder
    raise FileNotFoundError(
        f"no dataset found under root={str(base)!r} (looked for {marker!r} in it"
        + (f" and in {list(candidates)}" if candidates else "")
        + f"); expected layout:\n{layout}"
    )


class BaseDataset(Dataset):
    """Common attributes and item logic; subclasses implement ``_load`` and ``_train_frequencies``.

    Attributes:
        name: Registry name.
        task: ``"segmentation"`` or ``"classification"``.
        split: The split this object reads.
        class_names: One name per class.
        in_channels: Image channels (3 or 1).
        ignore_index: Ignored mask value (255).
        mean, std: Per-channel statistics in ``[0, 1]`` units for ``build_transforms``.
    """

    name: str = ""
    task: str = ""
    splits: tuple[str, ...] = ("train", "val")
    in_channels: int = 3
    ignore_index: int = 255
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    class_names: list[str]

    def __init__(self, split: str = "train", transform: Callable | None = None):
        if split not in self.splits:
            raise ValueError(
                f"`split` of dataset {self.name!r} must be one of {list(self.splits)}, got {split!r}"
            )
        if transform is not None and not callable(transform):
            raise ValueError(
                f"`transform` must be callable as transform(image, target) or None, got "
                f"{type(transform).__name__}"
            )
        self.split = split
        self.transform = transform

    # -- to implement -------------------------------------------------------------------------
    def _load(self, index: int) -> tuple[torch.Tensor, torch.Tensor | int]:
        raise NotImplementedError

    def _train_frequencies(self) -> list[int]:
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    # -- shared -----------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        """Number of classes ``C`` (background included for segmentation where it is a class)."""
        return len(self.class_names)

    @property
    def class_frequencies(self) -> list[int]:
        """Per-class counts on the TRAINING split: pixels (segmentation) or images (classification).

        The same numbers on every split object; computed on first use and cached in memory.
        """
        return self._train_frequencies()

    @property
    def groups(self) -> dict[str, list[int]]:
        """``{"head", "body", "tail"}`` -> sorted class indices from :attr:`class_frequencies`."""
        return head_body_tail(self.class_frequencies)

    def __getitem__(self, index: int):
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {self.name!r} with {len(self)} items")
        image, target = self._load(index % len(self))
        if self.transform is not None:
            return self.transform(image, target)
        return image, target

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, split={self.split!r}, items={len(self)}, "
            f"classes={self.num_classes}, task={self.task!r})"
        )


class LongTailSubset:
    """Mixin for a balanced classification dataset whose train split is sub-sampled to the
    exponential long-tail profile (``longtail_counts``) with a fixed seed; other splits stay whole.

    The host class reads its labels and calls ``self._select(labels, split)``; call
    :meth:`_init_longtail` before the host's ``__init__``.
    """

    counts: list[int]
    imbalance_factor: float
    seed: int

    def _init_longtail(self, n_max: int, num_classes: int, imbalance_factor: float, seed: int):
        self.counts = longtail_counts(n_max, num_classes, imbalance_factor)
        self.imbalance_factor, self.seed = float(imbalance_factor), int(seed)

    def _select(self, labels: np.ndarray, split: str) -> np.ndarray:
        if split != "train":
            return np.arange(len(labels))
        return longtail_subsample(labels, self.counts, self.seed)

    def _frequency_key(self):
        return (self.name, str(self.root.resolve()), tuple(self.counts), self.seed)


def as_image_tensor(image: np.ndarray) -> torch.Tensor:
    """``(H, W, C)`` uint8 array -> ``(C, H, W)`` uint8 tensor."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))  # (C, H, W)
