"""``predict``: a run folder, its exported file and its ONNX file label images as the model does."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from semantic_anchors.cli import main
from semantic_anchors.data import build_dataset
from semantic_anchors.inference import slide_logits
from semantic_anchors.models import create_model, load_exported, save_exported
from semantic_anchors.models.io.onnx import export_onnx
from semantic_anchors.train.export import export_run
from semantic_anchors.train.predict import load_predictor, predict

SYNTHLT_MEAN, SYNTHLT_STD = 0.5, 0.25  # the normalisation of the tiny run's dataset


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Three 64x64 synthlt images and one 40x56 crop (a second size, batched on its own)."""
    folder = tmp_path_factory.mktemp("images")
    dataset = build_dataset("synthlt", split="val", num_images=3)
    for i in range(3):
        Image.fromarray(dataset[i][0].permute(1, 2, 0).numpy()).save(folder / f"img{i}.png")
    crop = dataset[0][0][:, 10:50, 4:60].permute(1, 2, 0).numpy()  # (40, 56, 3)
    Image.fromarray(np.ascontiguousarray(crop)).save(folder / "crop.jpg", quality=95)
    return folder


@pytest.fixture(scope="module")
def sources(tiny_run, tmp_path_factory):
    """The tiny run folder, its exported file and its ONNX file."""
    folder = tmp_path_factory.mktemp("exports")
    return {
        "run": tiny_run,
        "exported": export_run(tiny_run, folder / "model.pt"),
        "onnx": export_run(tiny_run, folder / "model.onnx", format="onnx"),
    }


def _read(path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img)


def _normalised(path) -> torch.Tensor:
    image = torch.from_numpy(_read(path).copy()).permute(2, 0, 1).float() / 255  # (3, H, W)
    return ((image - SYNTHLT_MEAN) / SYNTHLT_STD)[None]  # (1, 3, H, W)


def test_the_three_sources_give_the_argmax_of_the_models_logits(sources, images, tmp_path):
    labels = {}
    for kind, source in sources.items():
        manifest = predict(source, [images], tmp_path / kind, batch_size=2, probs=True)
        assert manifest["source_kind"] == kind and len(manifest["images"]) == 4
        labels[kind] = {e["input"]: _read(tmp_path / kind / e["label"]) for e in manifest["images"]}
    model = load_exported(sources["exported"])
    for path in sorted(images.iterdir()):
        with torch.no_grad():
            logits = model(_normalised(path))[0]  # (13, H, W)
        expected = logits.argmax(0).numpy()  # (H, W)
        for kind in sources:
            assert np.array_equal(labels[kind][str(path)], expected), (kind, path.name)
        with Image.open(tmp_path / "run" / "labels" / f"{path.stem}.png") as img:
            assert img.mode == "P" and img.getpalette()[3:6] == [128, 0, 0]  # class 1's colour
        with Image.open(tmp_path / "run" / "overlays" / f"{path.stem}.png") as img:
            assert img.mode == "RGB" and img.size == _read(path).shape[1::-1]  # (W, H)
        probs = np.load(tmp_path / "run" / "probs" / f"{path.stem}.npy")
        assert probs.dtype == np.float16 and probs.shape == (13, *expected.shape)
        assert np.allclose(probs.astype(np.float32).sum(0), 1, atol=1e-2)
        assert np.allclose(probs, logits.softmax(0).numpy(), atol=1e-3)  # float16's precision


def test_slide_mode_comes_from_the_settings_for_torch_and_onnx(sources, images, tmp_path):
    model = load_exported(sources["exported"])
    settings = {**model.inference, "eval": {"mode": "slide", "crop_size": 32, "stride": 24}}
    pt = save_exported(model, tmp_path / "slide.pt", name="fcn_small", options={},
                       num_classes=13, inference=settings)  # fmt: skip
    onnx = export_onnx(model, tmp_path / "slide.onnx", in_channels=3, metadata=settings)
    x = _normalised(images / "img1.png")
    with torch.no_grad():
        slide = slide_logits(model, x, 13, 32, 24)[0].argmax(0).numpy()
        whole = model(x)[0].argmax(0).numpy()
    assert not np.array_equal(slide, whole)  # the test can tell the modes apart
    for source in (pt, onnx):
        manifest = predict(source, [images / "img1.png"], tmp_path / source.suffix[1:])
        assert manifest["eval"]["mode"] == "slide"
        assert np.array_equal(_read(tmp_path / source.suffix[1:] / "labels" / "img1.png"), slide)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """A 7-class grey-image classifier as an exported file and an ONNX file, and 5 images."""
    folder = tmp_path_factory.mktemp("classifier")
    model = create_model("small_cnn", num_classes=7, in_channels=1).eval()
    settings = {"task": "classification", "num_classes": 7, "in_channels": 1,
                "class_names": [f"c{i}" for i in range(7)], "mean": [0.3], "std": [0.2],
                "transforms": {"crop_size": None, "resize": None},
                "eval": {"mode": "whole", "crop_size": None, "stride": None}}  # fmt: skip
    pt = save_exported(model, folder / "cls.pt", name="small_cnn", options={"in_channels": 1},
                       num_classes=7, class_names=settings["class_names"], inference=settings)  # fmt: skip
    onnx = export_onnx(model, folder / "cls.onnx", in_channels=1, metadata=settings)
    gen = torch.Generator().manual_seed(0)
    (folder / "images").mkdir()
    for i in range(5):
        pixels = torch.randint(0, 256, (28, 28), dtype=torch.uint8, generator=gen).numpy()
        Image.fromarray(pixels).save(folder / "images" / f"g{i}.png")
    return model, pt, onnx, folder / "images"


def _rows(path) -> list[dict]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_the_classification_csv_is_the_softmax_topk(classifier, tmp_path):
    model, pt, onnx, folder = classifier
    manifest = predict(pt, [folder], tmp_path / "pt", topk=3, batch_size=2)
    assert manifest["topk"] == 3 and manifest["predictions"] == "predictions.csv"
    rows = _rows(tmp_path / "pt" / "predictions.csv")
    assert len(rows) == 5 * 3
    for path in sorted(folder.iterdir()):
        x = (torch.from_numpy(_read(path).copy()).float() / 255 - 0.3) / 0.2  # (28, 28)
        with torch.no_grad():
            scores, ids = model(x[None, None])[0].softmax(0).topk(3)
        mine = [r for r in rows if r["image"] == str(path)]
        assert [int(r["class_id"]) for r in mine] == ids.tolist()
        assert [r["class_name"] for r in mine] == [f"c{i}" for i in ids.tolist()]
        assert [int(r["rank"]) for r in mine] == [1, 2, 3]
        assert np.allclose([float(r["probability"]) for r in mine], scores.numpy(), atol=1e-6)
    predict(onnx, [folder], tmp_path / "onnx", topk=3)
    from_onnx = _rows(tmp_path / "onnx" / "predictions.csv")
    assert [r["class_id"] for r in from_onnx] == [r["class_id"] for r in rows]
    predict(pt, [folder], tmp_path / "all", topk=50, progress=True)  # topk > classes: all
    assert len(_rows(tmp_path / "all" / "predictions.csv")) == 5 * 7


def test_the_command_line_says_what_it_wrote(sources, images, tmp_path, capsys):
    out = tmp_path / "preds"
    assert main(["predict", str(sources["onnx"]), str(images / "img0.png"), str(images),
                 "--out", str(out), "--batch-size", "3"]) == 0  # fmt: skip
    assert f"predicted 4 images; outputs and predictions.json in {out}" in capsys.readouterr().out
    manifest = json.loads((out / "predictions.json").read_text())
    assert manifest["format"] == "semantic-anchors-predictions/1"
    assert manifest["palette"][:2] == ["#000000", "#800000"] and len(manifest["palette"]) == 13
    assert sorted(p.name for p in (out / "labels").iterdir()) == [
        "crop.png", "img0.png", "img1.png", "img2.png"
    ]  # fmt: skip


def _truncated(folder):
    good = (folder / "img0.png").read_bytes()
    return good[: len(good) // 2]


BAD = {
    "missing input": (lambda d, s: [s, str(d / "nope.png")], "no such image file or folder: "),
    "empty folder": (lambda d, s: [s, str(d / "empty")], "a folder without images"),
    "not an image": (lambda d, s: [s, str(d / "junk.png")], "junk.png: not a readable image"),
    "grey image": (lambda d, s: [s, str(d / "grey.png")],
                   "grey.png: a 1-channel image (mode L), but the model takes 3-channel images"),
    "truncated image": (lambda d, s: [s, str(d / "good"), "--batch-size", "1"],
                        "zz.png: not a readable image"),
    "missing source": (lambda d, s: [str(d / "none.pt"), str(d / "good")],
                       "no run folder, exported model or ONNX file at"),
    "same names": (lambda d, s: [s, str(d / "good"), str(d / "other")],
                   "would write outputs of the same name ('img0')"),
    "old export": (lambda d, s: [str(d / "old.pt"), str(d / "good")],
                   "old.pt holds no inference settings"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_input_is_one_named_error_and_leaves_no_output(case, sources, images, tmp_path,
                                                             capsys):  # fmt: skip
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    Image.new("L", (16, 16)).save(tmp_path / "grey.png")
    (tmp_path / "good").mkdir()
    (tmp_path / "other").mkdir()
    for name in ("img0.png", "img1.png"):
        (tmp_path / "good" / name).write_bytes((images / name).read_bytes())
    (tmp_path / "other" / "img0.png").write_bytes((images / "img0.png").read_bytes())
    (tmp_path / "good" / "zz.png").write_bytes(_truncated(images))  # fails after two are written
    model = load_exported(sources["exported"])
    save_exported(model, tmp_path / "old.pt", name="fcn_small", options={}, num_classes=13)
    make, message = BAD[case]
    out = tmp_path / "preds"
    assert main(["predict", *make(tmp_path, str(sources["run"])), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("semantic-anchors predict: error: ")
    assert message in err[0]
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".preds")]  # no partial one


def test_an_existing_folder_is_refused_unless_empty(sources, images, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="full exists and is not an empty folder"):
        predict(sources["exported"], [images], tmp_path / "full")
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    (tmp_path / "empty").mkdir()
    predict(sources["exported"], [images / "img0.png"], tmp_path / "empty")
    assert (tmp_path / "empty" / "predictions.json").is_file()


def test_a_predictor_gives_logits_at_each_images_size(sources):
    predictor = load_predictor(sources["onnx"])
    assert predictor.kind == "onnx" and predictor.task == "segmentation"
    images = [torch.randint(0, 256, (3, h, w), dtype=torch.uint8) for h, w in ((40, 56), (64, 64))]
    assert [tuple(x.shape) for x in predictor.predict(images)] == [(13, 40, 56), (13, 64, 64)]
    with pytest.raises(ValueError, match="ONNX models run on the CPU"):
        load_predictor(sources["onnx"], device="meta")
