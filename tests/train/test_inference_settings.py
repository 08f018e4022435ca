"""The inference settings of a run: its evaluation transform and mode, without reading data."""

import pytest
import torch

from semantic_anchors.data.datasets.synthlt import SynthLT
from semantic_anchors.train.config import load_config
from semantic_anchors.train.data import AnchorDataModule
from semantic_anchors.train.inference_settings import (
    SETTINGS_KEYS,
    check_settings,
    image_transform,
    inference_settings,
)

INFO = {"task": "segmentation", "num_classes": 5, "in_channels": 3,
        "class_names": ["a", "b", "c", "d", "e"]}  # fmt: skip


def test_a_segmentation_run_normalises_with_its_dataset_and_keeps_its_eval_mode():
    config = load_config("synthlt-fcn-quick", [
        "eval.mode=slide", "eval.crop_size=32", "eval.stride=24",
        "data.transforms={base_size: [96, 48]}",
    ])  # fmt: skip
    settings = inference_settings(config, INFO)
    assert list(settings) == list(SETTINGS_KEYS)
    assert settings["mean"] == list(SynthLT.mean) and settings["std"] == list(SynthLT.std)
    assert settings["transforms"] == {"base_size": [96, 48]}
    assert settings["eval"] == {"mode": "slide", "crop_size": 32, "stride": 24}
    assert settings["class_names"] == INFO["class_names"]


def test_the_transforms_mean_and_std_win_over_the_datasets():
    config = load_config("synthlt-fcn-quick", ["data.transforms={mean: [0.1, 0.2, 0.3], "
                                               "std: [0.5, 0.5, 0.5]}"])  # fmt: skip
    settings = inference_settings(config, INFO)
    assert settings["mean"] == [0.1, 0.2, 0.3] and settings["std"] == [0.5, 0.5, 0.5]


def test_a_classification_run_keeps_its_crop():
    config = load_config("synthlt-fcn-quick", ["data.crop_size=24"])
    info = {**INFO, "task": "classification"}
    assert inference_settings(config, info)["transforms"] == {"crop_size": 24, "resize": None}


def test_the_transform_equals_the_one_the_run_evaluates_with():
    config = load_config("synthlt-fcn-quick", [
        "data.options={num_images: 4}", "data.val_options={num_images: 2}",
        "data.num_workers=0", "data.transforms={base_size: [48, 40]}",
    ])  # fmt: skip
    dm = AnchorDataModule(config["data"], 0)
    image, _ = dm.val_set[0]  # (3, 64, 64) uint8
    expected, _ = dm.val_dataloader().dataset[0]  # the evaluation transform's output
    got = image_transform(inference_settings(config, INFO))(image)
    assert got.shape == expected.shape == (3, 40, 40)
    assert torch.equal(got, expected)


def test_missing_settings_name_the_file_and_the_fix():
    with pytest.raises(ValueError, match="old.pt holds no inference settings .*export the run"):
        check_settings(None, "old.pt")
    with pytest.raises(ValueError, match=r"\(eval missing\)"):
        check_settings({k: None for k in SETTINGS_KEYS if k != "eval"}, "x.onnx")
