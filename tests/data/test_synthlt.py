"""synthlt: contract, determinism, long tail, balanced val and the train-only colour bias."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semantic_anchors.data import build_dataset
from semantic_anchors.data.datasets.synthlt import SHAPES, TEXTURES, generate_synthlt

SMALL = {"num_train_images": 300, "num_val_images": 120}


@pytest.fixture(scope="module")
def train():
    return build_dataset("synthlt", split="train", **SMALL)


@pytest.fixture(scope="module")
def val():
    return build_dataset("synthlt", split="val", **SMALL)


def test_item_contract(train):
    image, target = train[0]
    assert image.shape == (3, 64, 64) and image.dtype == torch.uint8
    assert target.shape == (64, 64) and target.dtype == torch.int64
    assert target.min() >= 0 and target.max() < train.num_classes
    assert len(train) == 300 and train.task == "segmentation" and train.in_channels == 3
    assert train.num_classes == 13 and train.class_names[0] == "background"
    assert train.ignore_index == 255 and len(train.class_frequencies) == 13


def test_class_is_shape_and_texture(train):
    names = train.class_names[1:]
    assert len(set(names)) == len(names)
    for i, name in enumerate(names):
        assert name == f"{SHAPES[i % 5]}-{TEXTURES[i % 4]}"


def test_deterministic_from_seed():
    kwargs = dict(split="train", num_images=40, seed=7)
    a = build_dataset("synthlt", **kwargs)
    generate_synthlt.cache_clear()
    b = build_dataset("synthlt", **kwargs)
    assert a.images is not b.images
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    c = build_dataset("synthlt", split="train", num_images=40, seed=8)
    assert not np.array_equal(a.labels, c.labels)


def test_labels_only_generation_matches(train):
    _, labels, _ = generate_synthlt(train.config, "train", 300, False)
    assert np.array_equal(labels, train.labels)


def test_train_is_long_tailed_and_val_balanced(train, val):
    k = train.num_classes - 1
    train_objects = np.bincount(train.objects["label"] - 1, minlength=k)
    val_objects = np.bincount(val.objects["label"] - 1, minlength=k)
    # exponential profile with IF = 50 over the object classes
    ratio = train_objects[0] / train_objects[-1]
    assert 35 < ratio < 70 and np.all(np.diff(train_objects) <= 0)
    assert val_objects.max() - val_objects.min() <= 1


def test_pixel_frequencies_and_groups(train, val):
    freq = train.class_frequencies
    assert freq == np.bincount(train.labels.ravel(), minlength=13).tolist()
    assert val.class_frequencies == freq  # the val split reports the TRAINING frequencies
    groups = train.groups
    assert groups == val.groups and 0 in groups["head"] and 12 in groups["tail"]
    assert sorted(groups["head"] + groups["body"] + groups["tail"]) == list(range(13))


def test_colour_bias_train_vs_val(train, val):
    k = train.num_classes - 1

    def dominant_share(ds):
        objs = ds.objects
        return np.mean(objs["color"] == ds.dominant_colors[objs["label"] - 1])

    assert dominant_share(train) == pytest.approx(0.9 + 0.1 / k, abs=0.03)
    assert dominant_share(val) == pytest.approx(1 / k, abs=0.04)
    # measured on the pixels too: the mean colour of class-1 pixels is its dominant hue in train
    label = 1
    pixels = train.images.transpose(0, 2, 3, 1)[train.labels == label].astype(float)  # (n, 3)
    target = train.palette[train.dominant_colors[label - 1]] * 255
    assert np.linalg.norm(pixels.mean(0) - target) < 60


def test_colour_bias_option():
    ds = build_dataset("synthlt", split="train", num_images=200, color_bias=0.0)
    share = np.mean(ds.objects["color"] == ds.objects["label"] - 1)
    assert share < 0.2


def test_options_change_the_data():
    ds = build_dataset(
        "synthlt",
        split="val",
        num_images=5,
        image_size=32,
        num_object_classes=5,
        objects_per_image=(2, 2),
    )
    image, target = ds[4]
    assert image.shape == (3, 32, 32) and ds.num_classes == 6
    assert np.all(np.bincount(ds.objects["image"]) == 2)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_object_classes": 21},
        {"imbalance_factor": 0.5},
        {"color_bias": 1.5},
        {"objects_per_image": (3, 1)},
        {"image_size": 8},
        {"num_images": -1},
    ],
)
def test_bad_options(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        build_dataset("synthlt", split="val", **kwargs)


def test_index_errors(val):
    assert torch.equal(val[-1][1], val[len(val) - 1][1])
    with pytest.raises(IndexError):
        val[len(val)]
