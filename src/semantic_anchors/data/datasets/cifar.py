"""CIFAR-100 and CIFAR-100-LT readers (the python pickles of ``cifar-100-python``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .._safe_pickle import UnsafePickleError, safe_pickle_load
from ..io import require_file
from ..registry import register_dataset
from .base import BaseDataset, LongTailSubset, cached_frequencies, count_classes, resolve_root

__all__ = ["CIFAR100", "CIFAR100LT", "load_cifar_pickle"]

_LAYOUT = """\
<root>/cifar-100-python/       (or that folder itself)
  train     (pickle: 'data' uint8 (50000, 3072), 'fine_labels')
  test      (pickle: 'data' uint8 (10000, 3072), 'fine_labels')
  meta      (pickle: 'fine_label_names')"""


def load_cifar_pickle(path: Path) -> dict[str, object]:
    """Load one CIFAR python pickle with ``str`` keys, safely.

    The file is read by a restricted unpickler that only builds builtin containers and numpy
    arrays (:mod:`semantic_anchors.data._safe_pickle`): a crafted file cannot run code.

    Raises:
        FileNotFoundError: If the file is missing (names the layout).
        ValueError: If the file is not a readable CIFAR pickle, or references anything besides
            containers and numpy arrays (names the file and the refused global).
    """
    require_file(path, _LAYOUT)
    try:
        raw = safe_pickle_load(path, encoding="latin1")  # the official files are python-2 pickles
    except UnsafePickleError:  # a ValueError that names the file and the refused global
        raise
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a corrupt file
        raise ValueError(f"corrupt or unreadable CIFAR pickle {str(path)!r}: {err}") from err
    if not isinstance(raw, dict):
        raise ValueError(f"CIFAR pickle {str(path)!r} must hold a dict, got {type(raw).__name__}")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in raw.items()}


@register_dataset("cifar100")
class CIFAR100(BaseDataset):
    """CIFAR-100 classification (fine labels): 50,000 train / 10,000 test 32x32 RGB images.

    Args:
        root: Folder holding ``cifar-100-python/`` (or that folder).
        split: ``"train"``, ``"val"`` (= the test set) or ``"test"``.
        transform: Optional ``transform(image, target)``.

    Shape:
        - image: ``(3, 32, 32)`` uint8; target: ``int`` in ``[0, 100)``

    Raises:
        FileNotFoundError: If a pickle is missing (names the layout).
        ValueError: If a pickle is corrupt or its arrays are malformed (names the file).
    """

    name = "cifar100"
    task = "classification"
    splits = ("train", "val", "test")
    mean = (0.5071, 0.4865, 0.4409)
    std = (0.2673, 0.2564, 0.2762)

    def __init__(self, root=None, split: str = "train", transform: Callable | None = None):
        super().__init__(split, transform)
        self.root = resolve_root(root, ["cifar-100-python"], "meta", _LAYOUT)
        meta = load_cifar_pickle(self.root / "meta")
        names = meta.get("fine_label_names")
        if not isinstance(names, list) or len(names) != 100:
            raise ValueError(f"{str(self.root / 'meta')!r} must list 100 'fine_label_names'")
        self.class_names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
        images, labels = self._read_split("train" if split == "train" else "test")
        keep = self._select(labels, split)
        self.images = images[keep]  # (N, 3, 32, 32) uint8
        self.targets: list[int] = labels[keep].tolist()

    def _read_split(self, file: str) -> tuple[np.ndarray, np.ndarray]:
        path = self.root / file
        content = load_cifar_pickle(path)
        data, labels = content.get("data"), content.get("fine_labels")
        data = np.asarray(data) if data is not None else None
        if data is None or data.ndim != 2 or data.shape[1] != 3072 or labels is None:
            raise ValueError(
                f"CIFAR pickle {str(path)!r} must hold 'data' (N, 3072) uint8 and 'fine_labels'"
            )
        labels = np.asarray(labels, dtype=np.int64)  # (N,)
        if len(labels) != len(data) or labels.min(initial=0) < 0 or labels.max(initial=0) > 99:
            raise ValueError(
                f"CIFAR pickle {str(path)!r}: 'fine_labels' must be {len(data)} values in [0, 100)"
            )
        return data.astype(np.uint8).reshape(-1, 3, 32, 32), labels  # (N, 3, 32, 32), (N,)

    def _select(self, labels: np.ndarray, split: str) -> np.ndarray:
        return np.arange(len(labels))

    def __len__(self) -> int:
        return len(self.targets)

    def _load(self, index: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(self.images[index]), self.targets[index]

    def _train_frequencies(self) -> list[int]:
        def compute():
            if self.split == "train":
                return count_classes([np.asarray(self.targets)], self.num_classes)
            labels = self._read_split("train")[1]
            return count_classes([labels[self._select(labels, "train")]], self.num_classes)

        return cached_frequencies(self._frequency_key(), compute)

    def _frequency_key(self):
        return (self.name, str(self.root.resolve()))


@register_dataset("cifar100-lt")
class CIFAR100LT(LongTailSubset, CIFAR100):
    """CIFAR-100-LT: the training set sub-sampled to ``n_i = int(500 * IF ** (-i / 99))`` images of
    class ``i`` (10,847 images for IF = 100), with a fixed seed; val / test stay balanced (100 per
    class).

    Args:
        root: Folder holding ``cifar-100-python/``.
        split: ``"train"``, ``"val"`` (= test) or ``"test"``.
        transform: Optional ``transform(image, target)``.
        imbalance_factor: ``IF >= 1`` (100, 50 and 10 are the usual ones).
        n_max: Images of class 0 (500, all of them).
        seed: Seed of the per-class sub-sampler.

    Raises:
        FileNotFoundError: If a pickle is missing.
        ValueError: If ``imbalance_factor`` < 1, ``n_max`` exceeds the images available or a
            pickle is malformed.
    """

    name = "cifar100-lt"

    def __init__(
        self,
        root=None,
        split: str = "train",
        transform: Callable | None = None,
        imbalance_factor: float = 100.0,
        n_max: int = 500,
        seed: int = 0,
    ):
        self._init_longtail(n_max, 100, imbalance_factor, seed)
        super().__init__(root, split, transform)
