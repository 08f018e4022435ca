"""Cityscapes, ADE20K and Pascal-Context-59 readers on fixtures written in their layouts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semantic_anchors.data import build_dataset
from semantic_anchors.data.datasets.cityscapes import CITYSCAPES_ID_TO_TRAIN_ID
from tests._helpers.writers import (
    save_jpg,
    save_png,
    write_ade20k,
    write_cityscapes,
    write_pascal_context,
)


def _check_item(ds, expected_hw):
    image, target = ds[0]
    assert image.dtype == torch.uint8 and image.shape == (3, *expected_hw)
    assert target.dtype == torch.int64 and target.shape == expected_hw
    assert ds.task == "segmentation" and ds.ignore_index == 255


def _expected_counts(raws, mapping, num_classes):
    total = np.zeros(num_classes, dtype=np.int64)
    for raw in raws:
        mapped = mapping(raw)
        total += np.bincount(mapped[mapped != 255].ravel(), minlength=num_classes)
    return total.tolist()


# -- Cityscapes --------------------------------------------------------------------------------


def test_cityscapes_train_ids(tmp_path):
    written = write_cityscapes(tmp_path)
    train = build_dataset("cityscapes", root=tmp_path)
    val = build_dataset("cityscapes", root=tmp_path, split="val")
    assert (len(train), len(val), train.num_classes) == (3, 1, 19)
    _check_item(train, (16, 32))
    stem = train.samples[0][0].name.replace("_leftImg8bit.png", "")
    assert np.array_equal(train[0][1].numpy(), written[("train", stem)])
    raws = [v for (split, _), v in written.items() if split == "train"]
    expected = _expected_counts(raws, lambda r: r, 19)
    assert train.class_frequencies == expected and val.class_frequencies == expected


def test_cityscapes_maps_label_ids_to_train_ids(tmp_path):
    written = write_cityscapes(tmp_path, masks="labelIds")
    ds = build_dataset("cityscapes", root=tmp_path, split="val")
    raw = written[("val", "frankfurt_000000_000019")]
    lut = np.full(256, 255)
    for label_id, train_id in CITYSCAPES_ID_TO_TRAIN_ID.items():
        lut[label_id] = train_id
    target = ds[0][1].numpy()
    assert np.array_equal(target, lut[raw])
    # hand-checked ids: 7 road -> 0, 26 car -> 13, 33 bicycle -> 18, 0 / 1 unlabelled -> 255
    for label_id, train_id in ((7, 0), (26, 13), (33, 18), (0, 255), (1, 255), (23, 10), (24, 11)):
        assert np.all(target[raw == label_id] == train_id)


def test_cityscapes_parent_root_and_missing_mask(tmp_path):
    write_cityscapes(tmp_path / "cityscapes")
    assert len(build_dataset("cityscapes", root=tmp_path, split="val")) == 1
    next((tmp_path / "cityscapes" / "gtFine" / "val").rglob("*.png")).unlink()
    with pytest.raises(FileNotFoundError, match="no mask for image .*frankfurt.*labelTrainIds"):
        build_dataset("cityscapes", root=tmp_path, split="val")


def test_cityscapes_bad_values_and_size(tmp_path):
    write_cityscapes(tmp_path)
    ds = build_dataset("cityscapes", root=tmp_path, split="val")
    mask_path = ds.samples[0][1]
    save_png(mask_path, np.full((16, 32), 19, dtype=np.uint8))
    with pytest.raises(ValueError, match=r"labelTrainIds.png.*\[19\].*outside the label set"):
        ds[0]
    save_png(mask_path, np.zeros((16, 30), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"leftImg8bit.png.*\(16, 32\).*\(16, 30\)"):
        ds[0]


def test_cityscapes_corrupt_image(tmp_path):
    write_cityscapes(tmp_path)
    ds = build_dataset("cityscapes", root=tmp_path, split="val")
    ds.samples[0][0].write_bytes(b"garbage")
    with pytest.raises(ValueError, match="corrupt.*leftImg8bit.png"):
        ds[0]


# -- ADE20K -------------------------------------------------------------------------------------


def test_ade20k_reduce_zero_label(tmp_path):
    written = write_ade20k(tmp_path)
    train = build_dataset("ade20k", root=tmp_path)
    val = build_dataset("ade20k", root=tmp_path / "ADEChallengeData2016", split="val")
    assert (len(train), len(val), train.num_classes) == (3, 2, 150)
    assert len(set(train.class_names)) == 150
    _check_item(val, (12, 20))
    raw = written[("val", "ADE_val_00000001")]
    target = val[0][1].numpy()
    assert np.all(target[raw == 0] == 255) and np.all(target[raw == 1] == 0)
    assert np.all(target[raw == 150] == 149) and np.all(target[raw == 5] == 4)

    def reduce(r):
        return np.where(r == 0, 255, r.astype(int) - 1)

    raws = [v for (split, _), v in written.items() if split == "train"]
    assert val.class_frequencies == _expected_counts(raws, reduce, 150)
    assert sum(len(g) for g in val.groups.values()) == 150


def test_ade20k_errors(tmp_path):
    write_ade20k(tmp_path)
    base = tmp_path / "ADEChallengeData2016"
    ds = build_dataset("ade20k", root=tmp_path, split="val")
    save_png(ds.samples[1][1], np.full((12, 20), 151, dtype=np.uint8))
    with pytest.raises(ValueError, match=r"ADE_val_00000002.png.*\[151\]"):
        ds[1]
    (base / "annotations" / "training" / "ADE_train_00000002.png").unlink()
    with pytest.raises(FileNotFoundError, match="ADE_train_00000002.png"):
        build_dataset("ade20k", root=tmp_path)
    import shutil

    shutil.rmtree(base / "annotations" / "validation")
    with pytest.raises(FileNotFoundError, match="annotations/validation.*expected layout"):
        build_dataset("ade20k", root=tmp_path, split="val")


# -- Pascal-Context-59 --------------------------------------------------------------------------


def test_pascal_context_reduce_zero_label(tmp_path):
    written = write_pascal_context(tmp_path)
    train = build_dataset("pascal-context-59", root=tmp_path)
    val = build_dataset("pascal-context-59", root=tmp_path / "VOCdevkit" / "VOC2010", split="val")
    assert (len(train), len(val), train.num_classes) == (2, 1, 59)
    assert len(set(train.class_names)) == 59
    _check_item(train, (10, 14))
    raw = written[("val", "2008_000007")]
    target = val[0][1].numpy()
    assert np.all(target[raw == 0] == 255) and np.all(target[raw == 59] == 58)
    assert np.all(target[raw == 1] == 0) and np.all(target[raw == 3] == 2)
    assert val.class_frequencies == train.class_frequencies


def test_pascal_context_errors(tmp_path):
    write_pascal_context(tmp_path)
    base = tmp_path / "VOCdevkit" / "VOC2010"
    listing = base / "ImageSets" / "SegmentationContext" / "val.txt"
    listing.write_text("2008_000007\n2009_999999\n")
    with pytest.raises(FileNotFoundError, match="2009_999999.jpg"):
        build_dataset("pascal-context-59", root=tmp_path, split="val")
    listing.unlink()
    with pytest.raises(FileNotFoundError, match="SegmentationContext/val.txt"):
        build_dataset("pascal-context-59", root=tmp_path, split="val")
    save_jpg(base / "JPEGImages" / "2008_000002.jpg", np.zeros((11, 14, 3), np.uint8))
    ds = build_dataset("pascal-context-59", root=tmp_path)
    with pytest.raises(
        ValueError, match=r"2008_000002.jpg.*\(11, 14\).*2008_000002.png.*\(10, 14\)"
    ):
        ds[0]
