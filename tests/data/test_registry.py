"""Registry: names, errors for unknown names / options."""

from __future__ import annotations

import pytest

from semantic_anchors.data import build_dataset, list_datasets

EXPECTED = {
    "synthlt",
    "fashion-mnist",
    "fashion-lt",
    "fashion-scenes-lt",
    "cityscapes",
    "ade20k",
    "pascal-context-59",
    "cifar100",
    "cifar100-lt",
    "cub200",
}


def test_list_datasets():
    names = list_datasets()
    assert set(names) >= EXPECTED and names == sorted(names)


def test_unknown_name_lists_valid_and_close_matches():
    with pytest.raises(ValueError, match="; valid: ") as info:
        build_dataset("cityscape")
    assert "(did you mean cityscapes?)" in str(info.value)
    with pytest.raises(ValueError, match="synthlt"):
        build_dataset("imagenet")


def test_name_is_case_and_separator_insensitive():
    ds = build_dataset("SynthLT", split="val", num_images=2)
    assert ds.name == "synthlt"
    with pytest.raises(FileNotFoundError):
        build_dataset("pascal_context_59", root="/nonexistent")


def test_unknown_option_lists_accepted():
    with pytest.raises(ValueError, match="imbalance_factor"):
        build_dataset("synthlt", split="val", num_images=2, imbalance=3)


def test_bad_split_and_transform():
    with pytest.raises(ValueError, match="split"):
        build_dataset("synthlt", split="test", num_images=2)
    with pytest.raises(ValueError, match="transform"):
        build_dataset("synthlt", split="val", num_images=2, transform=3)


@pytest.mark.parametrize(
    "name", ["cityscapes", "ade20k", "pascal-context-59", "cifar100", "cub200"]
)
def test_missing_root_names_layout(name, tmp_path):
    with pytest.raises(FileNotFoundError, match="expected layout"):
        build_dataset(name, root=tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="root"):
        build_dataset(name)
