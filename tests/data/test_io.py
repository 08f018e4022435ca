"""Image / mask reading and label mapping errors name the file and the offending values."""

from __future__ import annotations

import numpy as np
import pytest

from semantic_anchors.data.io import LabelMapping, check_same_size, read_image, read_mask
from tests._helpers.writers import save_jpg, save_png


def test_read_image_rgb_and_grey(tmp_path):
    arr = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    path = save_png(tmp_path / "a.png", arr)
    assert np.array_equal(read_image(path), arr)
    grey = read_image(path, "L")
    assert grey.shape == (2, 3, 1) and grey.dtype == np.uint8


def test_read_image_missing_names_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        read_image(tmp_path / "nope.jpg")


def test_corrupt_image_names_path(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    with pytest.raises(ValueError, match="broken.jpg"):
        read_image(bad)


def test_truncated_image_names_path(tmp_path):
    path = save_jpg(
        tmp_path / "cut.jpg", np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)
    )
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="cut.jpg"):
        read_image(path)


def test_read_mask_keeps_palette_indices(tmp_path):
    from PIL import Image

    raw = np.array([[0, 1], [2, 59]], dtype=np.uint8)
    img = Image.fromarray(raw, mode="P")
    img.putpalette([v for i in range(256) for v in (i, 255 - i, i // 2)])
    img.save(tmp_path / "p.png")
    assert np.array_equal(read_mask(tmp_path / "p.png"), raw)


def test_read_mask_rejects_colour_png(tmp_path):
    path = save_png(tmp_path / "rgb_mask.png", np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(ValueError, match="rgb_mask.png.*single-channel"):
        read_mask(path)


def test_size_mismatch_names_both_files():
    with pytest.raises(ValueError, match=r"img.png.*\(4, 5\).*msk.png.*\(4, 6\)"):
        check_same_size(np.zeros((4, 5, 3)), np.zeros((4, 6)), "img.png", "msk.png")


def test_label_mapping_values_and_errors():
    mapping = LabelMapping.reduce_zero_label(3)
    raw = np.array([[0, 1, 2, 3, 255]], dtype=np.uint8)
    assert mapping(raw, "m.png").tolist() == [[255, 0, 1, 2, 255]]
    with pytest.raises(ValueError, match=r"m.png.*\[4, 7\]"):
        mapping(np.array([[4, 7, 1]], dtype=np.uint8), "m.png")
    identity = LabelMapping.identity(2)
    with pytest.raises(ValueError, match=r"\[300\]"):
        identity(np.array([[300, 1]], dtype=np.int32), "wide.png")
