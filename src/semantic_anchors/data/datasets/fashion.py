"""Fashion-MNIST based datasets: ``fashion-mnist``, ``fashion-lt`` and ``fashion-scenes-lt``.

The files come from the Debian package ``dataset-fashion-mnist`` (IDX gz files in
``/usr/share/datasets/fashion-mnist``); ``SEMANTIC_ANCHORS_FASHION_ROOT`` or ``root=`` point
elsewhere.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ..instances import MAX_INSTANCES_PER_IMAGE, visible_slots
from ..longtail import split_total
from ..registry import register_dataset
from .base import BaseDataset, LongTailSubset, cached_frequencies, count_classes

__all__ = [
    "FASHION_CLASSES",
    "FASHION_ROOT_ENV",
    "FashionLT",
    "FashionMNIST",
    "FashionScenesLT",
    "default_fashion_root",
    "load_fashion_mnist",
    "read_idx",
]

FASHION_ROOT_ENV = "SEMANTIC_ANCHORS_FASHION_ROOT"
DEBIAN_FASHION_ROOT = "/usr/share/datasets/fashion-mnist"  # `dpkg -L dataset-fashion-mnist`
FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
    "Ankle boot",
]  # fmt: skip
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def default_fashion_root() -> Path:
    """``$SEMANTIC_ANCHORS_FASHION_ROOT`` if set, else the Debian package folder."""
    return Path(os.environ.get(FASHION_ROOT_ENV) or DEBIAN_FASHION_ROOT)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (``.gz`` or raw), the format of (Fashion-)MNIST.

    Returns:
        The array with the shape and dtype stored in the header.

    Raises:
        FileNotFoundError: If the file is missing.
        ValueError: If the header or the payload size is invalid (names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {str(path)!r}")
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as err:
        raise ValueError(f"corrupt or unreadable IDX file {str(path)!r}: {err}") from err
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{str(path)!r} is not an IDX file (bad magic number {data[:4]!r})")
    ndim = data[3]
    header = 4 + 4 * ndim
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(
            f"IDX file {str(path)!r}: header says shape {dims} ({expected} bytes) but the payload "
            f"has {len(data) - header} bytes"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)


def _find(root: Path, stem: str) -> Path | None:
    for name in (f"{stem}.gz", stem):
        if (root / name).is_file():
            return root / name
    return None


@lru_cache(maxsize=4)
def _load_cached(root: str, file_split: str) -> tuple[np.ndarray, np.ndarray]:
    image_stem, label_stem = _FILES[file_split]
    image_path, label_path = _find(Path(root), image_stem), _find(Path(root), label_stem)
    if image_path is None or label_path is None:
        missing = [
            s + ".gz" for s, p in ((image_stem, image_path), (label_stem, label_path)) if p is None
        ]
        raise FileNotFoundError(
            f"Fashion-MNIST files {missing} not found in {root!r}. Install them with "
            f"`apt-get install dataset-fashion-mnist` (into {DEBIAN_FASHION_ROOT}), set "
            f"{FASHION_ROOT_ENV}, or pass root=<folder holding train-images-idx3-ubyte.gz, "
            "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz>"
        )
    images, labels = read_idx(image_path), read_idx(label_path)
    if (
        images.ndim != 3
        or images.dtype != np.uint8
        or labels.ndim != 1
        or len(labels) != len(images)
    ):
        raise ValueError(
            f"{str(image_path)!r} / {str(label_path)!r} must hold uint8 images (N, H, W) and N "
            f"labels, got shapes {images.shape} and {labels.shape}"
        )
    if labels.size and labels.max() > 9:
        raise ValueError(
            f"{str(label_path)!r} has labels {np.unique(labels[labels > 9])[:10].tolist()} outside 0..9"
        )
    return images, labels.astype(np.int64)


def load_fashion_mnist(root=None, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Load the Fashion-MNIST ``train`` or ``test`` arrays (cached in memory).

    Returns:
        ``(images, labels)``: ``uint8`` ``(N, 28, 28)`` and ``int64`` ``(N,)``.

    Raises:
        FileNotFoundError: If the IDX files are missing (says how to install them).
        ValueError: If a file is corrupt.
    """
    root = Path(root).expanduser() if root is not None else default_fashion_root()
    return _load_cached(str(root.resolve()), split)


@register_dataset("fashion-mnist")
class FashionMNIST(BaseDataset):
    """Fashion-MNIST classification: 60,000 train / 10,000 test 28x28 grey images, 10 classes.

    Args:
        root: Folder holding the IDX files (default: the Debian package folder or
            ``$SEMANTIC_ANCHORS_FASHION_ROOT``).
        split: ``"train"``, ``"val"`` (= test) or ``"test"``.
        transform: Optional ``transform(image, target)``.

    Shape:
        - image: ``(1, 28, 28)`` uint8; target: ``int`` in ``[0, 10)``

    Raises:
        FileNotFoundError: If the files are missing (says how to install them).
    """

    name = "fashion-mnist"
    task = "classification"
    splits = ("train", "val", "test")
    in_channels = 1
    mean = (0.2860,)
    std = (0.3530,)
    class_names = FASHION_CLASSES

    def __init__(self, root=None, split: str = "train", transform: Callable | None = None):
        super().__init__(split, transform)
        self.root = Path(root).expanduser() if root is not None else default_fashion_root()
        images, labels = load_fashion_mnist(self.root, "train" if split == "train" else "test")
        keep = self._select(labels, split)
        self.images = images[keep]  # (N, 28, 28)
        self.targets: list[int] = labels[keep].tolist()

    def _select(self, labels: np.ndarray, split: str) -> np.ndarray:
        return np.arange(len(labels))

    def __len__(self) -> int:
        return len(self.targets)

    def _load(self, index: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(self.images[index][None].copy()), self.targets[index]  # (1, 28, 28)

    def _frequency_key(self):
        return (self.name, str(self.root.resolve()))

    def _train_frequencies(self) -> list[int]:
        def compute():
            labels = load_fashion_mnist(self.root, "train")[1]
            return count_classes([labels[self._select(labels, "train")]], self.num_classes)

        return cached_frequencies(self._frequency_key(), compute)


@register_dataset("fashion-lt")
class FashionLT(LongTailSubset, FashionMNIST):
    """Long-tailed Fashion-MNIST: train keeps ``n_i = int(n_max * IF ** (-i / 9))`` random images of
    class ``i`` (class 0 the most frequent; 14,886 images for IF = 100), test stays balanced
    (1,000 per class).

    Args:
        root, split, transform: As :class:`FashionMNIST`.
        imbalance_factor: ``IF >= 1`` (100).
        n_max: Images of class 0 (6000, all of them).
        seed: Seed of the sub-sampler (0).

    Raises:
        FileNotFoundError: If the files are missing.
        ValueError: If ``imbalance_factor`` < 1 or ``n_max`` exceeds the images available.
    """

    name = "fashion-lt"

    def __init__(
        self,
        root=None,
        split: str = "train",
        transform: Callable | None = None,
        imbalance_factor: float = 100.0,
        n_max: int = 6000,
        seed: int = 0,
    ):
        self._init_longtail(n_max, 10, imbalance_factor, seed)
        super().__init__(root, split, transform)


def _compose_scenes(
    items, item_labels, num_images, counts, size, per_image, rng, threshold, with_slots=False
):
    """Paste items onto ``size x size`` black canvases, per slot; ``with_slots``: + instances."""
    lo, hi = per_image
    n_per = rng.integers(lo, hi + 1, size=num_images)  # (N,)
    total = int(n_per.sum())
    classes = np.repeat(np.arange(10), split_total(total, counts))  # (M,)
    rng.shuffle(classes)
    # one random item of its class for every object
    by_class = [np.flatnonzero(item_labels == c) for c in range(10)]
    picks = np.empty(total, dtype=np.int64)
    for c in range(10):
        where = np.flatnonzero(classes == c)
        if where.size:
            pool = by_class[c]
            picks[where] = rng.choice(pool, size=where.size, replace=where.size > pool.size)
    image_of = np.repeat(np.arange(num_images), n_per)  # (M,)
    slot_of = np.concatenate([np.arange(n) for n in n_per]) if total else np.zeros(0, int)
    h, w = items.shape[1:]
    top = rng.integers(0, size - h + 1, size=total)  # (M,)
    left = rng.integers(0, size - w + 1, size=total)
    flip = rng.random(total) < 0.5
    images = np.zeros((num_images, size, size), dtype=np.uint8)  # (N, S, S)
    labels = np.zeros((num_images, size, size), dtype=np.uint8)
    slots = np.zeros_like(labels) if with_slots else None  # (N, S, S) slot + 1, 0 = none
    rows = np.arange(h)[None, :, None]  # (1, h, 1)
    cols = np.arange(w)[None, None, :]  # (1, 1, w)
    for slot in range(hi):  # later slots occlude earlier ones
        sel = np.flatnonzero(slot_of == slot)
        if not sel.size:
            continue
        patch = items[picks[sel]]  # (m, h, w)
        patch = np.where(flip[sel, None, None], patch[:, :, ::-1], patch)
        fg = patch > threshold  # (m, h, w)
        idx = (image_of[sel, None, None], top[sel, None, None] + rows, left[sel, None, None] + cols)
        images[idx] = np.where(fg, patch, images[idx])
        labels[idx] = np.where(fg, classes[sel, None, None] + 1, labels[idx])
        if with_slots:
            slots[idx] = np.where(fg, np.uint8(slot + 1), slots[idx])
    if not with_slots:
        return images, labels, None
    return images, labels, visible_slots(slots, image_of, slot_of, classes + 1)


@lru_cache(maxsize=4)
def _generate_scenes(
    root: str, split: str, num_images, size, per_image, imbalance_factor, seed, noise, instances
):
    file_split = "train" if split == "train" else "test"
    items, item_labels = load_fashion_mnist(root, file_split)
    if split == "train":
        counts = imbalance_factor ** (-np.arange(10) / 9)  # (10,)
    else:
        counts = np.ones(10)  # val: balanced, items from the test split
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    images, labels, found = _compose_scenes(
        items, item_labels, num_images, counts, size, per_image, rng, 32, instances
    )
    if noise > 0:
        noisy = images + rng.normal(0, noise * 255, size=images.shape)  # (N, S, S)
        images = np.clip(noisy + 0.5, 0, 255).astype(np.uint8)
    return images, labels, found


@register_dataset("fashion-scenes-lt")
class FashionScenesLT(BaseDataset):
    """Long-tailed scene segmentation composed from Fashion-MNIST items.

    Each ``S x S`` grey scene holds a few 28x28 items at random positions (randomly mirrored,
    later items on top). Pixel label = item class + 1 where the item's pixel is foreground
    (> 32), 0 = background. Item classes follow ``IF ** (-i / 9)`` in train (items from the
    Fashion-MNIST train split) and are balanced in val (items from the test split).

    Args:
        root: Folder of the Fashion-MNIST IDX files (default: the Debian package folder).
        split: ``"train"`` or ``"val"``.
        transform: Optional ``transform(image, target)``.
        num_images: Images of this split (default ``num_train_images`` / ``num_val_images``).
        num_train_images: 2000. num_val_images: 500.
        image_size: ``S`` >= 28 (64).
        objects_per_image: Inclusive range (1, 3).
        imbalance_factor: ``IF >= 1`` (100).
        noise: Pixel noise std as a fraction of 255 (0.03).
        seed: Seed; the same settings give identical scenes.
        with_instances: Keep which item owns each pixel as ``instances`` (a
            :class:`~semantic_anchors.data.instances.SceneInstances` whose classes are the
            items' labels ``class + 1``; else ``None``). Images and labels stay the same.

    Shape:
        - image: ``(1, S, S)`` uint8; target: ``(S, S)`` int64 in ``[0, 10]``

    Raises:
        FileNotFoundError: If the Fashion-MNIST files are missing.
        ValueError: If an option is out of range.
    """

    name = "fashion-scenes-lt"
    task = "segmentation"
    in_channels = 1
    mean = (0.1,)
    std = (0.25,)
    class_names = ["background"] + FASHION_CLASSES

    def __init__(
        self,
        root=None,
        split: str = "train",
        transform: Callable | None = None,
        num_images: int | None = None,
        num_train_images: int = 2000,
        num_val_images: int = 500,
        image_size: int = 64,
        objects_per_image: tuple[int, int] = (1, 3),
        imbalance_factor: float = 100.0,
        noise: float = 0.03,
        seed: int = 0,
        with_instances: bool = False,
    ):
        super().__init__(split, transform)
        if num_images is not None:
            if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 0:
                raise ValueError(f"`num_images` must be an int >= 0, got {num_images!r}")
            num_train_images = num_images if split == "train" else num_train_images
            num_val_images = num_images if split == "val" else num_val_images
        if min(num_train_images, num_val_images) < 0:
            raise ValueError("`num_train_images` / `num_val_images` must be >= 0")
        if image_size < 28:
            raise ValueError(f"`image_size` must be >= 28 (the item size), got {image_size}")
        lo, hi = objects_per_image
        if not 1 <= lo <= hi or (with_instances and hi > MAX_INSTANCES_PER_IMAGE):
            raise ValueError(
                "`objects_per_image` must satisfy 1 <= low <= high (high <= "
                f"{MAX_INSTANCES_PER_IMAGE} with instances), got {objects_per_image}"
            )
        if not imbalance_factor >= 1:
            raise ValueError(f"`imbalance_factor` must be >= 1, got {imbalance_factor}")
        self.root = Path(root).expanduser() if root is not None else default_fashion_root()
        self._settings = (
            int(image_size),
            (int(lo), int(hi)),
            float(imbalance_factor),
            int(seed),
            float(noise),
        )
        self.num_train_images = int(num_train_images)
        n = num_train_images if split == "train" else num_val_images
        generated = self._generate(split, int(n), bool(with_instances))
        self.images, self.labels, self.instances = generated

    def _generate(self, split, n, instances=False):
        size, per_image, imbalance, seed, noise = self._settings
        root = str(self.root.resolve())
        return _generate_scenes(root, split, n, size, per_image, imbalance, seed, noise, instances)

    def __len__(self) -> int:
        return len(self.labels)

    def _load(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = torch.from_numpy(self.images[index][None].copy())  # (1, S, S) uint8
        return image, torch.from_numpy(self.labels[index].astype(np.int64))  # (S, S)

    def _train_frequencies(self) -> list[int]:
        def compute():
            labels = (
                self.labels
                if self.split == "train"
                else self._generate("train", self.num_train_images)[1]
            )
            return count_classes([labels], self.num_classes)

        key = (self.name, str(self.root.resolve()), self._settings, self.num_train_images)
        return cached_frequencies(key, compute)
