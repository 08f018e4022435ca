"""The files of ``predict``: which images are read, how, and the outputs written all or nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from semantic_anchors.train.predict_io import (
    MANIFEST,
    OutputFolder,
    list_images,
    overlay,
    palette,
    read_image,
    write_label_png,
)


def test_a_folder_gives_its_images_in_name_order_not_its_sub_folders(tmp_path):
    for name in ("b.PNG", "a.jpg", "c.jpeg", ".hidden.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.png").write_bytes(b"")
    names = [p.name for p in list_images([tmp_path])]
    assert names == ["a.jpg", "b.PNG", "c.jpeg"]
    assert [p.name for p in list_images([tmp_path / "notes.txt"])] == ["notes.txt"]  # as given
    assert len(list_images([tmp_path, tmp_path / "a.jpg"])) == 3  # each image once


def test_bad_inputs_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such image file or folder: .*missing"):
        list_images([tmp_path / "missing"])
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "deeper").mkdir()
    (tmp_path / "sub" / "deeper" / "x.png").write_bytes(b"")
    with pytest.raises(ValueError, match="sub: a folder without images .*not in its sub-folders"):
        list_images([tmp_path / "sub"])
    with pytest.raises(ValueError, match="no input"):
        list_images([])


@pytest.mark.parametrize(
    ("mode", "channels", "pixel"),
    [("RGB", 3, (10, 20, 30)), ("RGBA", 3, (10, 20, 30, 99)), ("L", 1, 77), ("LA", 1, (77, 5))],
)
def test_an_image_is_read_in_its_own_channels_alpha_dropped(mode, channels, pixel, tmp_path):
    Image.new(mode, (5, 3), pixel).save(tmp_path / "x.png")
    image = read_image(tmp_path / "x.png", channels)
    assert image.dtype == torch.uint8 and image.shape == (channels, 3, 5)
    expected = pixel[:channels] if isinstance(pixel, tuple) else (pixel,)
    assert image[:, 0, 0].tolist() == list(expected)
    other = 1 if channels == 3 else 3
    with pytest.raises(ValueError, match=f"a {channels}-channel image .* takes {other}-channel"):
        read_image(tmp_path / "x.png", other)


def test_a_palette_image_is_read_as_its_colours(tmp_path):
    img = Image.new("P", (4, 2), 1)
    img.putpalette([0, 0, 0, 200, 100, 50])
    img.save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png", 3)[:, 1, 3].tolist() == [200, 100, 50]


def test_an_unsupported_mode_is_named(tmp_path):
    Image.new("I;16", (4, 4)).save(tmp_path / "deep.png")
    with pytest.raises(ValueError, match="deep.png: image mode 'I;16' is not supported"):
        read_image(tmp_path / "deep.png", 1)


def test_the_palette_is_the_voc_one_with_a_colour_per_class():
    colours = palette(300)
    assert colours.dtype == np.uint8 and colours.shape == (300, 3)
    assert colours[:4].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]]
    assert colours[8].tolist() == [64, 0, 0]
    assert len({tuple(c) for c in colours.tolist()}) == 300


@pytest.mark.parametrize(("classes", "mode"), [(256, "P"), (300, "I;16")])
def test_label_pngs_keep_the_class_ids(classes, mode, tmp_path):
    labels = np.arange(classes * 2).reshape(2, classes) % classes  # (2, K): every id
    write_label_png(labels, tmp_path / "l.png", palette(classes))
    with Image.open(tmp_path / "l.png") as img:
        assert img.mode == mode
        assert np.array_equal(np.asarray(img).astype(np.int64), labels)
        if mode == "P":
            assert img.getpalette()[3 * 255 : 3 * 256] == palette(256)[255].tolist()


def test_the_overlay_blends_half_and_half():
    image = torch.full((1, 2, 2), 100, dtype=torch.uint8)  # grey, shown as grey
    labels = np.array([[0, 1], [1, 0]])
    out = overlay(image, labels, palette(2))
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8
    assert out[0, 0].tolist() == [50, 50, 50] and out[0, 1].tolist() == [114, 50, 50]


def test_the_output_folder_appears_complete_or_not_at_all(tmp_path):
    out = tmp_path / "preds"
    with OutputFolder(out) as folder:
        folder.path("labels/a.png").write_bytes(b"x")
        assert not out.exists()  # nothing under the final name while writing
        assert folder.tmp.name.startswith(".preds.partial-")
        folder.finish({"images": ["a"]})
    assert json.loads((out / MANIFEST).read_text())["images"] == ["a"]
    assert (out / "labels" / "a.png").read_bytes() == b"x"
    assert not folder.tmp.exists()

    failed = tmp_path / "failed"
    with pytest.raises(RuntimeError), OutputFolder(failed) as folder:
        folder.path("labels/a.png").write_bytes(b"x")
        raise RuntimeError("the model failed")
    assert not failed.exists() and not folder.tmp.exists()


def test_an_existing_output_is_never_overwritten(tmp_path):
    (tmp_path / "file").write_text("mine")
    with pytest.raises(FileExistsError, match="file exists and is not an empty folder"):
        OutputFolder(tmp_path / "file")
    (tmp_path / "empty").mkdir()
    with OutputFolder(tmp_path / "empty") as folder:
        folder.finish({})
    assert (tmp_path / "empty" / MANIFEST).is_file()
