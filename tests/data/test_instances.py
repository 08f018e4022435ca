"""``SceneInstances`` / ``visible_slots``: visible ownership, renumbering, occluded objects."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semantic_anchors.data.instances import MIN_INSTANCE_PIXELS, SceneInstances, visible_slots


def paint(objects, shape):
    """Slow reference: paint rectangles one by one (later on top); ``owner`` = object index + 1."""
    owner = np.zeros(shape, dtype=np.int64)
    slots = np.zeros(shape, dtype=np.uint8)
    for k, (image, slot, _label, (r0, r1, c0, c1)) in enumerate(objects):
        for r in range(r0, r1):
            for c in range(c0, c1):
                owner[image, r, c] = k + 1
                slots[image, r, c] = slot + 1
    return owner, slots


# image 0: object 1 hides object 0 entirely, object 2 overlaps object 1; image 1: nothing;
# image 2: one object. Objects are listed out of order on purpose.
OBJECTS = [
    (2, 0, 4, (0, 2, 0, 3)),
    (0, 0, 7, (1, 3, 1, 3)),
    (0, 1, 2, (0, 4, 0, 4)),
    (0, 2, 7, (2, 6, 2, 6)),
]


def build(objects=OBJECTS, shape=(3, 6, 6)):
    # draw in (image, slot) order, as a generator does, whatever the list order
    drawn = sorted(objects, key=lambda o: (o[0], o[1]))
    owner, slots = paint(drawn, shape)
    arrays = [np.array([o[i] for o in objects], dtype=np.int64) for i in range(3)]
    return owner, drawn, visible_slots(slots, *arrays)


def test_ids_are_the_visible_objects_in_drawing_order():
    owner, drawn, inst = build()
    assert inst.occluded == 1  # (0, 0): painted over by (0, 1)
    assert inst.offsets.tolist() == [0, 2, 2, 3]
    assert inst.classes.tolist() == [2, 7, 4]
    for i in range(3):
        visible = [k + 1 for k, o in enumerate(drawn) if o[0] == i and (owner[i] == k + 1).any()]
        expected = np.zeros(owner[i].shape, dtype=np.int64)
        for new_id, k in enumerate(visible, start=1):
            expected[owner[i] == k] = new_id
        assert np.array_equal(inst.ids[i], expected), i
    assert inst.ids.dtype == np.uint8
    assert inst.pixels.tolist() == [(inst.ids[0] == k).sum() for k in (1, 2)] + [6]
    # `objects` points back into the list as given (not the drawing order)
    assert inst.objects.tolist() == [2, 3, 0]


def test_semantic_reproduces_the_painted_labels():
    owner, drawn, inst = build()
    labels = np.zeros(owner.shape, dtype=np.uint8)
    for k, o in enumerate(drawn):
        labels[owner == k + 1] = o[2]
    assert np.array_equal(inst.semantic(), labels)
    broken = SceneInstances(
        inst.ids, inst.classes[::-1].copy(), inst.offsets, inst.pixels, inst.objects, 0
    )
    assert not np.array_equal(broken.semantic(), labels)


def test_item_kept_and_counts():
    _, _, inst = build()
    ids, classes = inst.item(0)
    assert ids.dtype == torch.uint8 and ids.shape == (6, 6) and classes.tolist() == [2, 7]
    assert inst.item(1)[1].shape == (0,) and inst.item(1)[1].dtype == torch.int64
    assert inst.kept(7).tolist() == [True, True, False]  # pixels 12 (partly hidden), 16, 6
    assert inst.pixels.tolist() == [12, 16, 6]
    assert inst.class_counts(9, min_pixels=7) == [0, 0, 1, 0, 0, 0, 0, 1, 0]
    assert inst.class_counts(9, min_pixels=1) == [0, 0, 1, 0, 1, 0, 0, 1, 0]
    assert MIN_INSTANCE_PIXELS == 16 and inst.class_counts(9) == [0, 0, 0, 0, 0, 0, 0, 1, 0]


def test_no_objects_and_no_images():
    empty = visible_slots(np.zeros((2, 4, 4), np.uint8), *[np.zeros(0, np.int64)] * 3)
    assert empty.offsets.tolist() == [0, 0, 0] and empty.classes.shape == (0,)
    assert not empty.ids.any() and empty.occluded == 0
    none = visible_slots(np.zeros((0, 4, 4), np.uint8), *[np.zeros(0, np.int64)] * 3)
    assert len(none) == 0 and none.offsets.tolist() == [0]


def test_too_many_objects_per_image():
    n = 255
    slots = np.zeros((1, 2, 2), np.uint8)
    args = np.zeros(n, np.int64), np.arange(n), np.ones(n, np.int64)
    with pytest.raises(ValueError, match="at most 254 objects per image, got 255"):
        visible_slots(slots, *args)


# ----------------------------------------------------------------- InstanceMaps
def test_instance_maps_stack_labels_and_ids_and_park_small_instances():
    from semantic_anchors.data import build_dataset
    from semantic_anchors.data.instances import InstanceMaps

    ds = build_dataset("synthlt", split="train", with_instances=True, num_images=40, seed=3)
    maps = InstanceMaps(ds)
    assert len(maps) == len(ds) and maps.num_classes == ds.num_classes
    assert maps.class_frequencies == ds.class_frequencies
    parked = 0
    for i in range(len(ds)):
        image, target = maps[i]
        ref_image, semantic = ds[i]
        assert torch.equal(image, ref_image) and target.shape == (2, *semantic.shape)
        assert torch.equal(target[0], semantic.long())
        ids, classes = ds.instances.item(i)
        lo = int(ds.instances.offsets[i])
        for k in range(1, classes.numel() + 1):  # a slow per-instance check
            pixels = ids == k
            small = int(ds.instances.pixels[lo + k - 1]) < MIN_INSTANCE_PIXELS
            assert (target[1][pixels] == (255 if small else k)).all()
            assert (target[0][pixels] == classes[k - 1]).all()
            parked += small
        assert (target[1][ids == 0] == 0).all()
    assert parked > 0  # the check saw the drop rule at work


def test_instance_maps_need_instances():
    from semantic_anchors.data import build_dataset
    from semantic_anchors.data.instances import InstanceMaps

    ds = build_dataset("synthlt", split="train", num_images=4)
    with pytest.raises(ValueError, match="data.instances needs a dataset generated with instances"):
        InstanceMaps(ds)
