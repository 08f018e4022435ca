"""Shared logic of the on-disk segmentation readers (image file + label PNG per sample)."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from ..io import LabelMapping, check_same_size, read_image, read_mask
from .base import BaseDataset, as_image_tensor, cached_frequencies

__all__ = ["SegmentationFolderDataset"]


class SegmentationFolderDataset(BaseDataset):
    """A list of ``(image path, mask path)`` pairs whose masks go through a :class:`LabelMapping`.

    Subclasses set ``name``, ``class_names``, ``splits``, ``layout`` (the text shown when files are
    missing) and implement ``_list_samples(split)`` and ``_mapping_for(mask_path)``.

    Raises (on item access):
        FileNotFoundError: If an image or mask file is missing.
        ValueError: If an image is corrupt, image and mask sizes differ, or the mask holds values
            outside the label set (other than ignore) — naming the file(s) and values.
    """

    task = "segmentation"
    layout = ""

    def __init__(self, root, split: str = "train", transform: Callable | None = None):
        super().__init__(split, transform)
        self.root = Path(root)
        self.samples: list[tuple[Path, Path]] = self._list_samples(split)
        if not self.samples:
            raise FileNotFoundError(
                f"no {split!r} samples of {self.name!r} found under {str(self.root)!r}; expected "
                f"layout:\n{self.layout}"
            )

    def _list_samples(self, split: str) -> list[tuple[Path, Path]]:
        raise NotImplementedError

    def _mapping_for(self, mask_path: Path) -> LabelMapping:
        raise NotImplementedError

    def read_target(self, mask_path: Path) -> np.ndarray:
        """Read and map one mask to training labels (``uint8`` ``(H, W)``, ignore = 255)."""
        return self._mapping_for(mask_path)(read_mask(mask_path), mask_path)

    def __len__(self) -> int:
        return len(self.samples)

    def _load(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image_path, mask_path = self.samples[index]
        image = read_image(image_path, "RGB")  # (H, W, 3)
        mask = self.read_target(mask_path)  # (H, W)
        check_same_size(image, mask, image_path, mask_path)
        return as_image_tensor(image), torch.from_numpy(mask.astype(np.int64))

    def _frequency_key(self):
        return (type(self).__name__, str(self.root.resolve()))

    def _train_frequencies(self) -> list[int]:
        def compute() -> list[int]:
            train = self.samples if self.split == "train" else self._list_samples("train")
            if not train:
                raise FileNotFoundError(
                    f"class frequencies of {self.name!r} are counted on the training split, but no "
                    f"training samples were found under {str(self.root)!r}; expected layout:\n"
                    f"{self.layout}"
                )

            def count(pair):
                labels = self.read_target(pair[1])  # (H, W) uint8
                return np.bincount(labels.ravel(), minlength=256)[: self.num_classes]

            # PNG decoding releases the GIL, so threads help on large training sets
            with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
                return np.sum(list(pool.map(count, train)), axis=0).tolist()

        return cached_frequencies(self._frequency_key(), compute)
