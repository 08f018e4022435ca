"""``fashion-scenes-lt`` with ``with_instances=True``: the same scenes, plus who owns each pixel."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from semantic_anchors.data import build_dataset
from semantic_anchors.data.datasets.fashion import DEBIAN_FASHION_ROOT, _generate_scenes

HAVE_DEBIAN = (Path(DEBIAN_FASHION_ROOT) / "train-labels-idx1-ubyte.gz").is_file()
FIXTURE = dict(num_train_images=40, num_val_images=20, seed=3)

# sha256 (first 16 hex digits) of the images and labels, computed with main's code before
# instances existed (commit 38ccfde): the published results depend on these exact scenes
FIXTURE_SUMS = {
    "train": ("ac7da151c657055d", "26f4fd60a48afced"),
    "val": ("dedd244542371a9b", "b6ea44cfd7b6f1f6"),
}
REAL_SUMS = {  # the shipped defaults on the real Fashion-MNIST files
    "train": ("163716a7887f1cfc", "fac71ffc5c339026"),
    "val": ("cdaea9652e17b150", "a292a6f7078d201b"),
}


def digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]


@pytest.mark.parametrize("split", ["train", "val"])
@pytest.mark.parametrize("with_instances", [False, True])
def test_scenes_are_bitwise_unchanged(fashion_root, split, with_instances):
    _generate_scenes.cache_clear()  # generate, do not reuse the other variant's arrays
    ds = build_dataset(
        "fashion-scenes-lt",
        root=fashion_root,
        split=split,
        with_instances=with_instances,
        **FIXTURE,
    )
    assert (digest(ds.images), digest(ds.labels)) == FIXTURE_SUMS[split]
    assert (ds.instances is not None) == with_instances


@pytest.mark.skipif(not HAVE_DEBIAN, reason="dataset-fashion-mnist is not installed")
@pytest.mark.parametrize("split", ["train", "val"])
def test_real_scenes_are_bitwise_unchanged(split):
    _generate_scenes.cache_clear()
    ds = build_dataset("fashion-scenes-lt", split=split, with_instances=True)
    assert (digest(ds.images), digest(ds.labels)) == REAL_SUMS[split]
    assert np.array_equal(ds.instances.semantic(), ds.labels)
    assert (
        ds.class_frequencies
        == np.bincount(build_dataset("fashion-scenes-lt").labels.ravel(), minlength=11).tolist()
    )


def test_instances_reproduce_the_labels(fashion_root):
    ds = build_dataset(
        "fashion-scenes-lt", root=fashion_root, with_instances=True, num_images=60, seed=1
    )
    inst = ds.instances
    assert inst.ids.shape == ds.labels.shape and inst.ids.dtype == np.uint8
    assert np.array_equal(inst.semantic(), ds.labels)
    assert ((inst.ids > 0) == (ds.labels > 0)).all()
    assert inst.classes.min() >= 1 and inst.classes.max() <= 10  # labels, not 0-based classes
    assert inst.pixels.sum() == (ds.labels > 0).sum()


def test_instance_masks_are_the_visible_part_of_each_item(fashion_root):
    """Fixture items are solid 16 x 12 rectangles (every pixel foreground), so the item drawn
    last in an image is a full rectangle and every earlier one a part of its rectangle."""
    ds = build_dataset(
        "fashion-scenes-lt", root=fashion_root, with_instances=True, num_images=60, seed=2
    )
    inst = ds.instances
    drawn = np.bincount(ds.instances.ids.reshape(60, -1).max(1), minlength=4)
    assert drawn[2:].sum() > 10  # enough images with occlusion to mean something
    for i in range(60):
        n = int(inst.offsets[i + 1] - inst.offsets[i])
        assert n == inst.ids[i].max() >= 1
        for k in range(1, n + 1):
            rows, cols = np.nonzero(inst.ids[i] == k)
            assert rows.max() - rows.min() < 16 and cols.max() - cols.min() < 12
            if k == n:  # on top: nothing hides it
                assert rows.size == 16 * 12 and rows.max() - rows.min() == 15


def test_one_item_per_image_is_its_whole_foreground(fashion_root):
    ds = build_dataset(
        "fashion-scenes-lt",
        root=fashion_root,
        with_instances=True,
        num_images=30,
        objects_per_image=(1, 1),
    )
    assert np.diff(ds.instances.offsets).tolist() == [1] * 30 and ds.instances.occluded == 0
    assert np.array_equal(ds.instances.ids, (ds.labels > 0).astype(np.uint8))
    assert ds.instances.classes.tolist() == ds.labels.reshape(30, -1).max(1).tolist()


def test_too_many_objects_for_instances(fashion_root):
    with pytest.raises(ValueError, match=r"high <= 254 with instances"):
        build_dataset(
            "fashion-scenes-lt", root=fashion_root, with_instances=True, objects_per_image=(1, 255)
        )
