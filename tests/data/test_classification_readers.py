"""CIFAR-100 / CIFAR-100-LT and CUB-200-2011 readers on fixtures written in their layouts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semantic_anchors.data import build_dataset, longtail_counts

from .writers import write_cifar100, write_cub


def test_cifar100_items(cifar_root):
    train = build_dataset("cifar100", root=cifar_root)
    test = build_dataset("cifar100", root=cifar_root / "cifar-100-python", split="test")
    assert (len(train), len(test), train.num_classes) == (300, 200, 100)
    assert train.class_names[:2] == ["class_000", "class_001"]
    image, target = train[5]
    assert image.shape == (3, 32, 32) and image.dtype == torch.uint8 and isinstance(target, int)
    # the fixture writes the class into the first red pixel: images and labels stay paired
    assert all(int(train[i][0][0, 0, 0]) == train.targets[i] for i in range(len(train)))
    assert test.class_frequencies == [3] * 100
    assert len(build_dataset("cifar100", root=cifar_root, split="val")) == 200


def test_cifar100_lt_10847(tmp_path):
    counts = longtail_counts(500, 100, 100)
    write_cifar100(tmp_path, train_per_class=counts, test_per_class=1)
    train = build_dataset("cifar100-lt", root=tmp_path)
    assert len(train) == 10847
    assert np.bincount(train.targets, minlength=100).tolist() == counts
    val = build_dataset("cifar100-lt", root=tmp_path, split="val")
    assert len(val) == 100 and val.class_frequencies == counts
    assert val.groups["head"] == list(range(33)) and val.groups["tail"] == list(range(67, 100))
    assert all(int(train[i][0][0, 0, 0]) == train.targets[i] for i in range(0, len(train), 97))


def test_cifar100_lt_seeded(cifar_root):
    a = build_dataset("cifar100-lt", root=cifar_root, imbalance_factor=3, n_max=3, seed=1)
    b = build_dataset("cifar100-lt", root=cifar_root, imbalance_factor=3, n_max=3, seed=1)
    assert np.array_equal(a.images, b.images) and a.targets == b.targets
    assert np.bincount(a.targets, minlength=100).tolist() == longtail_counts(3, 100, 3)
    with pytest.raises(ValueError, match="counts"):
        build_dataset("cifar100-lt", root=cifar_root)  # IF=100 needs 500 images of class 0


def test_cifar_corrupt_pickle(cifar_root):
    (cifar_root / "cifar-100-python" / "test").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="cifar-100-python/test"):
        build_dataset("cifar100", root=cifar_root, split="test")
    (cifar_root / "cifar-100-python" / "train").unlink()
    with pytest.raises(FileNotFoundError, match="cifar-100-python/train"):
        build_dataset("cifar100", root=cifar_root)


def test_cub(tmp_path):
    base = write_cub(tmp_path)
    train = build_dataset("cub200", root=tmp_path)
    test = build_dataset("cub200", root=base, split="test")
    assert (len(train), len(test), train.num_classes) == (6, 3, 3)
    assert train.class_names == ["Bird_1", "Bird_2", "Bird_3"]
    assert train.targets == [0, 0, 1, 1, 2, 2] and test.targets == [0, 1, 2]
    image, target = train[2]
    assert image.shape == (3, 21, 26) and image.dtype == torch.uint8 and target == 1
    assert test.class_frequencies == [2, 2, 2]


def test_cub_errors(tmp_path):
    base = write_cub(tmp_path)
    train = build_dataset("cub200", root=tmp_path)
    train.paths[0].write_bytes(b"\x00\x01broken")
    with pytest.raises(ValueError, match="Bird_1_0001.jpg"):
        train[0]
    train.paths[1].unlink()
    with pytest.raises(FileNotFoundError, match="Bird_1_0002.jpg"):
        train[1]
    (base / "train_test_split.txt").write_text("1 0\n")
    with pytest.raises(ValueError, match="train_test_split"):
        build_dataset("cub200", root=tmp_path)
    (base / "classes.txt").unlink()
    with pytest.raises(FileNotFoundError, match="classes.txt"):
        build_dataset("cub200", root=tmp_path)
