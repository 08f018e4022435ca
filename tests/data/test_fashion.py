"""Fashion-MNIST readers: IDX format, fashion-lt sub-sampling, fashion-scenes-lt composition."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from semantic_anchors.data import build_dataset, longtail_counts
from semantic_anchors.data.datasets.fashion import DEBIAN_FASHION_ROOT, FASHION_ROOT_ENV, read_idx
from tests._helpers.writers import write_idx

HAVE_DEBIAN = (Path(DEBIAN_FASHION_ROOT) / "train-labels-idx1-ubyte.gz").is_file()


def test_idx_round_trip(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(read_idx(write_idx(tmp_path / "a-idx3-ubyte.gz", arr)), arr)
    assert np.array_equal(read_idx(write_idx(tmp_path / "b-idx3-ubyte", arr)), arr)


def test_idx_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad-idx1-ubyte.gz"
    with gzip.open(bad, "wb") as f:
        f.write(b"\x01\x02\x03\x04rest")
    with pytest.raises(ValueError, match="bad-idx1-ubyte.gz"):
        read_idx(bad)
    short = write_idx(tmp_path / "short-idx1-ubyte", np.zeros(10, np.uint8))
    short.write_bytes(short.read_bytes()[:-3])
    with pytest.raises(ValueError, match="short-idx1-ubyte.*payload"):
        read_idx(short)


def test_fashion_mnist_on_fixture(fashion_root):
    train = build_dataset("fashion-mnist", root=fashion_root)
    image, target = train[0]
    assert image.shape == (1, 28, 28) and image.dtype == torch.uint8 and isinstance(target, int)
    assert len(train) == 300 and train.in_channels == 1 and train.num_classes == 10
    assert train.targets == [train[i][1] for i in range(len(train))]
    val = build_dataset("fashion-mnist", root=fashion_root, split="val")
    assert len(val) == 100 and val.class_frequencies == [30] * 10


def test_fashion_lt_on_fixture(fashion_root):
    counts = longtail_counts(30, 10, 10)
    train = build_dataset("fashion-lt", root=fashion_root, imbalance_factor=10, n_max=30)
    assert np.bincount(train.targets, minlength=10).tolist() == counts
    assert train.class_frequencies == counts
    again = build_dataset("fashion-lt", root=fashion_root, imbalance_factor=10, n_max=30)
    assert torch.equal(
        torch.stack([train[i][0] for i in range(20)]), torch.stack([again[i][0] for i in range(20)])
    )
    test = build_dataset(
        "fashion-lt", root=fashion_root, split="test", imbalance_factor=10, n_max=30
    )
    assert np.bincount(test.targets).tolist() == [10] * 10 and test.class_frequencies == counts
    assert test.groups == {"head": [0, 1, 2], "body": [3, 4, 5, 6], "tail": [7, 8, 9]}
    with pytest.raises(ValueError, match="counts"):
        build_dataset("fashion-lt", root=fashion_root, n_max=31)


def test_missing_files_say_how_to_install(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        build_dataset("fashion-mnist", root=tmp_path)
    monkeypatch.setenv(FASHION_ROOT_ENV, str(tmp_path / "elsewhere"))
    with pytest.raises(FileNotFoundError, match="elsewhere"):
        build_dataset("fashion-lt")


def test_env_var_sets_default_root(fashion_root, monkeypatch):
    monkeypatch.setenv(FASHION_ROOT_ENV, str(fashion_root))
    assert len(build_dataset("fashion-mnist", split="test")) == 100


def test_fashion_scenes_labels_and_determinism(fashion_root):
    kwargs = dict(root=fashion_root, num_train_images=40, num_val_images=20, seed=3)
    train = build_dataset("fashion-scenes-lt", **kwargs)
    image, target = train[0]
    assert image.shape == (1, 64, 64) and image.dtype == torch.uint8
    assert target.shape == (64, 64) and target.dtype == torch.int64
    assert train.num_classes == 11 and train.class_names[0] == "background"
    labels = train.labels
    assert labels.max() <= 10 and (labels > 0).any()
    # foreground pixels are bright item pixels (fixture items are >= 60), background is noise
    fg = labels > 0
    assert train.images[fg].mean() > 100 and train.images[~fg].mean() < 30
    from semantic_anchors.data.datasets.fashion import _generate_scenes

    _generate_scenes.cache_clear()
    again = build_dataset("fashion-scenes-lt", **kwargs)
    assert np.array_equal(again.images, train.images) and np.array_equal(again.labels, labels)
    other = build_dataset("fashion-scenes-lt", **{**kwargs, "seed": 4})
    assert not np.array_equal(other.labels, labels)
    val = build_dataset("fashion-scenes-lt", split="val", **kwargs)
    assert len(val) == 20 and val.class_frequencies == train.class_frequencies
    assert train.class_frequencies == np.bincount(labels.ravel(), minlength=11).tolist()


def test_fashion_scenes_long_tail(fashion_root):
    train = build_dataset(
        "fashion-scenes-lt", root=fashion_root, num_images=300, objects_per_image=(1, 1)
    )
    per_image_class = train.labels.reshape(300, -1).max(1)  # one item per image
    counts = np.bincount(per_image_class, minlength=11)[1:]
    assert counts[0] > 10 * counts[-1] and counts.sum() == 300


@pytest.mark.skipif(not HAVE_DEBIAN, reason="dataset-fashion-mnist is not installed")
def test_real_fashion_lt_counts():
    train = build_dataset("fashion-lt")
    assert np.bincount(train.targets).tolist() == [
        6000,
        3596,
        2156,
        1292,
        774,
        464,
        278,
        166,
        100,
        60,
    ]
    assert len(train) == 14886
    test = build_dataset("fashion-lt", split="test")
    assert np.bincount(test.targets).tolist() == [1000] * 10
    assert len(build_dataset("fashion-mnist")) == 60000
