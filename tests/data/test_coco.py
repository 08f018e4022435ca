"""COCO export: the json loads with ``pycocotools.coco.COCO`` and says what the instances are."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from semantic_anchors.data import build_dataset
from semantic_anchors.data.coco import coco_dict, write_coco
from tests._helpers.references import slow_instances

coco_api = pytest.importorskip("pycocotools.coco")
mask_api = pytest.importorskip("pycocotools.mask")


@pytest.fixture
def scenes(fashion_root):
    return build_dataset(
        "fashion-scenes-lt",
        root=fashion_root,
        split="val",
        num_images=25,
        seed=7,
        with_instances=True,
    )


# pycocotools 2.0.11's mask decoder trips numpy 2's __array__ copy deprecation (its code, not ours)
@pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy:DeprecationWarning"
)
@pytest.mark.parametrize("min_pixels", [16, 150])
def test_round_trip_through_pycocotools(scenes, tmp_path, capsys, min_pixels):
    path = write_coco(scenes, tmp_path / "out" / "val.json", min_pixels=min_pixels)
    coco = coco_api.COCO(str(path))
    capsys.readouterr()  # COCO() prints its loading messages
    assert sorted(coco.getImgIds()) == list(range(1, 26))
    assert [coco.cats[c]["name"] for c in sorted(coco.cats)] == scenes.class_names[1:]
    inst = scenes.instances
    expected_count = int(inst.kept(min_pixels).sum())
    assert len(coco.getAnnIds()) == expected_count
    if min_pixels == 150:
        assert 0 < expected_count < len(inst.classes)  # the rule dropped some
    for i in range(25):
        ids, classes = inst.item(i)
        expected = slow_instances(ids.tolist(), classes.tolist(), min_pixels)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[i + 1]))
        assert [a["category_id"] for a in anns] == [label for label, _, _ in expected]
        kept_ids = [k for k in range(1, len(classes) + 1) if (ids == k).sum() >= min_pixels]
        for ann, k, (_, pixels, (x0, y0, x1, y1)) in zip(anns, kept_ids, expected, strict=True):
            assert ann["bbox"] == [x0, y0, x1 - x0, y1 - y0] and ann["area"] == pixels
            assert ann["iscrowd"] == 0
            mask = coco.annToMask(ann)  # (H, W) uint8
            assert mask.sum() == pixels and mask_api.area(ann["segmentation"]) == pixels
            assert mask_api.toBbox(ann["segmentation"]).tolist() == ann["bbox"]
            assert np.array_equal(mask > 0, ids.numpy() == k)
    per_class = [len(coco.getAnnIds(catIds=[c])) for c in range(1, 11)]
    assert per_class == inst.class_counts(11, min_pixels)[1:]


def test_an_image_without_instances_is_listed(fashion_root):
    ds = build_dataset(
        "fashion-scenes-lt", root=fashion_root, num_images=3, objects_per_image=(1, 1),
        with_instances=True,
    )  # fmt: skip
    coco = coco_dict(ds, min_pixels=10_000)  # nothing is big enough
    assert len(coco["images"]) == 3 and coco["annotations"] == []
    assert coco["images"][0] == {
        "id": 1, "file_name": "fashion-scenes-lt-train-000000.png", "height": 64, "width": 64,
    }  # fmt: skip


def test_needs_instances_and_pycocotools(fashion_root, scenes, monkeypatch):
    plain = build_dataset("fashion-scenes-lt", root=fashion_root, num_images=2)
    with pytest.raises(ValueError, match="with_instances=True"):
        coco_dict(plain)
    monkeypatch.setitem(sys.modules, "pycocotools", None)
    with pytest.raises(ModuleNotFoundError, match=r"semantic-anchors\[detection\]"):
        coco_dict(scenes)
