"""Writers of tiny datasets in exactly the standard on-disk layouts (nothing is downloaded)."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image


def save_png(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path)
    return path


def save_jpg(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, quality=95)
    return path


def rgb(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def write_cityscapes(root: Path, masks: str = "trainIds", size=(16, 32), seed: int = 0) -> dict:
    """Cityscapes fixture: train 2 cities x 2 images, val 1 image; masks as trainIds or labelIds.

    Returns the written raw masks keyed by (split, stem).
    """
    rng = np.random.default_rng(seed)
    written = {}
    layout = {"train": {"aachen": 2, "bochum": 1}, "val": {"frankfurt": 1}}
    label_ids = np.array([0, 1, 7, 8, 11, 26, 33, 24, 23])  # a mix of ignored and evaluated ids
    for split, cities in layout.items():
        for city, count in cities.items():
            for k in range(count):
                stem = f"{city}_{k:06d}_000019"
                save_png(
                    root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", rgb(rng, *size)
                )
                if masks == "trainIds":
                    raw = rng.choice(np.r_[np.arange(19), 255], size=size).astype(np.uint8)
                    name = f"{stem}_gtFine_labelTrainIds.png"
                else:
                    raw = rng.choice(label_ids, size=size).astype(np.uint8)
                    name = f"{stem}_gtFine_labelIds.png"
                save_png(root / "gtFine" / split / city / name, raw)
                written[(split, stem)] = raw
    return written


def write_ade20k(root: Path, size=(12, 20), seed: int = 0) -> dict:
    """ADEChallengeData2016 fixture: 3 training and 2 validation images; raw masks 0..150."""
    rng = np.random.default_rng(seed)
    base = root / "ADEChallengeData2016"
    written = {}
    for split, folder, prefix, count in (
        ("train", "training", "ADE_train", 3),
        ("val", "validation", "ADE_val", 2),
    ):
        for k in range(1, count + 1):
            stem = f"{prefix}_{k:08d}"
            save_jpg(base / "images" / folder / f"{stem}.jpg", rgb(rng, *size))
            raw = rng.choice([0, 1, 2, 5, 150], size=size).astype(np.uint8)
            save_png(base / "annotations" / folder / f"{stem}.png", raw)
            written[(split, stem)] = raw
    return written


def write_pascal_context(root: Path, size=(10, 14), seed: int = 0) -> dict:
    """VOC2010 fixture with SegmentationClassContext masks (0..59) and the two split lists."""
    rng = np.random.default_rng(seed)
    base = root / "VOCdevkit" / "VOC2010"
    splits = {"train": ["2008_000002", "2008_000003"], "val": ["2008_000007"]}
    written = {}
    for split, ids in splits.items():
        for sample_id in ids:
            save_jpg(base / "JPEGImages" / f"{sample_id}.jpg", rgb(rng, *size))
            raw = rng.choice([0, 1, 3, 59], size=size).astype(np.uint8)
            save_png(base / "SegmentationClassContext" / f"{sample_id}.png", raw)
            written[(split, sample_id)] = raw
        listing = base / "ImageSets" / "SegmentationContext" / f"{split}.txt"
        listing.parent.mkdir(parents=True, exist_ok=True)
        listing.write_text("\n".join(ids) + "\n")
    return written


def write_cifar100(root: Path, train_per_class, test_per_class: int = 1, seed: int = 0) -> Path:
    """``cifar-100-python/{train,test,meta}`` pickles (python-2 style: bytes keys); tiny payloads.

    ``train_per_class``: an int or a list of 100 counts.
    """
    rng = np.random.default_rng(seed)
    base = root / "cifar-100-python"
    base.mkdir(parents=True, exist_ok=True)
    if isinstance(train_per_class, int):
        train_per_class = [train_per_class] * 100
    for name, counts in (("train", train_per_class), ("test", [test_per_class] * 100)):
        labels = np.repeat(np.arange(100), counts)
        rng.shuffle(labels)
        # the class index in the first pixel lets tests check image / label pairing
        data = np.zeros((labels.size, 3072), dtype=np.uint8)
        data[:, 0] = labels
        content = {
            b"data": data,
            b"fine_labels": labels.tolist(),
            b"coarse_labels": (labels // 5).tolist(),
        }
        with open(base / name, "wb") as f:
            pickle.dump(content, f)
    with open(base / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": [f"class_{i:03d}".encode() for i in range(100)]}, f)
    return base


def write_cub(root: Path, num_classes: int = 3, per_class: int = 3, seed: int = 0) -> Path:
    """``CUB_200_2011`` fixture: classes.txt, images.txt, labels, split (first image of each class
    is a test image), and JPEG files of varying size."""
    rng = np.random.default_rng(seed)
    base = root / "CUB_200_2011"
    classes, images, labels, split = [], [], [], []
    image_id = 0
    for c in range(1, num_classes + 1):
        folder = f"{c:03d}.Bird_{c}"
        classes.append(f"{c} {folder}")
        for k in range(per_class):
            image_id += 1
            rel = f"{folder}/Bird_{c}_{k:04d}.jpg"
            save_jpg(base / "images" / rel, rgb(rng, 20 + k, 24 + c))
            images.append(f"{image_id} {rel}")
            labels.append(f"{image_id} {c}")
            split.append(f"{image_id} {0 if k == 0 else 1}")
    for name, lines in (
        ("classes.txt", classes),
        ("images.txt", images),
        ("image_class_labels.txt", labels),
        ("train_test_split.txt", split),
    ):
        (base / name).write_text("\n".join(lines) + "\n")
    return base


def write_idx(path: Path, array: np.ndarray) -> Path:
    """IDX (uint8) file, gzip-compressed when the name ends with .gz."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(payload)
    return path


def write_fashion(
    root: Path, train_per_class: int = 30, test_per_class: int = 10, seed: int = 0
) -> Path:
    """The four Fashion-MNIST IDX gz files; item ``k`` of class ``c`` is a filled 28x28 blob."""
    rng = np.random.default_rng(seed)
    for prefix, per_class in (("train", train_per_class), ("t10k", test_per_class)):
        labels = np.repeat(np.arange(10, dtype=np.uint8), per_class)
        rng.shuffle(labels)
        images = np.zeros((labels.size, 28, 28), dtype=np.uint8)
        images[:, 6:22, 8:20] = rng.integers(60, 256, size=(labels.size, 16, 12))
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return root
