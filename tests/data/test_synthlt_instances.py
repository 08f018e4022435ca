"""``synthlt`` with ``with_instances=True``: the same data, plus which object owns each pixel."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from semantic_anchors.data import build_dataset
from semantic_anchors.data.datasets.synthlt import generate_synthlt, generate_synthlt_instances

SMALL = dict(num_train_images=40, num_val_images=20, seed=3)
# sha256 (first 16 hex digits) of images and labels from main's code before instances (38ccfde)
SUMS = {
    ("train", 40): ("98d4955c6b644f48", "169e85c68fe73e56"),
    ("val", 20): ("f6cccc90bfb30633", "0dd7ce3ba64dc88a"),
    ("train", 2000): ("3c756e62a123a4a8", "10e98503bf8010f0"),  # the shipped defaults
}


def digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]


@pytest.mark.parametrize("with_instances", [False, True])
@pytest.mark.parametrize(
    "split, kwargs",
    [("train", SMALL), ("val", SMALL), ("train", {})],
    ids=["train", "val", "default"],
)
def test_data_is_bitwise_unchanged(split, kwargs, with_instances):
    generate_synthlt.cache_clear()
    ds = build_dataset("synthlt", split=split, with_instances=with_instances, **kwargs)
    assert (digest(ds.images), digest(ds.labels)) == SUMS[(split, len(ds))]
    assert (ds.instances is not None) == with_instances


def test_instances_reproduce_the_labels_and_name_their_objects():
    ds = build_dataset("synthlt", split="train", with_instances=True, num_images=200)
    inst = ds.instances
    assert np.array_equal(inst.semantic(), ds.labels)
    assert np.array_equal(ds.objects["label"][inst.objects], inst.classes)
    assert np.array_equal(
        ds.objects["image"][inst.objects], np.repeat(np.arange(200), np.diff(inst.offsets))
    )
    assert inst.occluded == len(ds.objects["label"]) - len(inst.classes) > 0  # some hidden
    size = ds.config.image_size
    rows, cols = np.mgrid[0:size, 0:size] + 0.5  # pixel centres
    for m in range(0, len(inst.classes), 7):  # every 7th instance: it lies around its object
        i = np.searchsorted(inst.offsets, m, side="right") - 1
        k = m - inst.offsets[i] + 1
        o = inst.objects[m]
        dist = np.hypot(rows - ds.objects["cy"][o], cols - ds.objects["cx"][o])
        assert (dist[inst.ids[i] == k] <= 1.2 * ds.objects["radius"][o] + 1).all(), m


def test_one_object_per_image_is_its_whole_foreground():
    ds = build_dataset(
        "synthlt", split="val", num_images=30, objects_per_image=(1, 1), with_instances=True
    )
    assert np.array_equal(ds.instances.ids, (ds.labels > 0).astype(np.uint8))
    assert ds.instances.classes.tolist() == ds.objects["label"].tolist()


def test_instances_are_cached_and_checked():
    ds = build_dataset("synthlt", split="val", num_images=8, with_instances=True)
    assert generate_synthlt_instances(ds.config, "val", 8) is ds.instances
    with pytest.raises(ValueError, match=r"high <= 254 with instances"):
        build_dataset("synthlt", num_images=2, objects_per_image=(1, 300), with_instances=True)
