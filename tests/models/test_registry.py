"""Registry and factory: names, close matches, keyword and value checks, docstring examples."""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil

import pytest
from torch import nn

import semantic_anchors.models as models
from semantic_anchors.models import create_model, list_models, register_model
from semantic_anchors.models.registry import MODELS

CLASSIFIERS = [
    "hf_convnext_t", "hf_vit_b16", "hf_vit_s16",
    "resnet101", "resnet18", "resnet32_cifar", "resnet34", "resnet50", "small_cnn",
]  # fmt: skip
SEGMENTORS = [
    "deeplabv3_r101_d8",
    "deeplabv3_r18_d8",
    "deeplabv3_r50_d8",
    "fcn_hr18", "fcn_hr48",
    "fcn_r101_d8",
    "fcn_r18_d8",
    "fcn_r50_d8",
    "fcn_small",
    "mask2former_swin_t", "mask2former_tiny",
    "ocrnet_hr18", "ocrnet_hr48",
    "segformer_b0", "segformer_b1", "segformer_b2", "segformer_b3", "segformer_b4", "segformer_b5",
    "upernet_convnext_t", "upernet_swin_b", "upernet_swin_l", "upernet_swin_s", "upernet_swin_t",
]  # fmt: skip


def test_list_models() -> None:
    assert list_models(task="classification") == CLASSIFIERS
    assert list_models(task="segmentation") == SEGMENTORS
    assert list_models() == sorted(CLASSIFIERS + SEGMENTORS)
    assert list_models("deeplabv3_*") == [
        "deeplabv3_r101_d8",
        "deeplabv3_r18_d8",
        "deeplabv3_r50_d8",
    ]
    with pytest.raises(ValueError, match="task: expected one of"):
        list_models(task="detection")


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("resnet5", "resnet50"),
        ("fcn_r50", "fcn_r50_d8"),
        ("deeplabv3_r50", "deeplabv3_r50_d8"),
    ],
)
def test_unknown_name_lists_close_matches(name: str, suggestion: str) -> None:
    with pytest.raises(ValueError, match=rf"unknown model '{name}' \(did you mean .*{suggestion}"):
        create_model(name)


def test_unknown_name_without_close_match_lists_all() -> None:
    with pytest.raises(ValueError, match=r"; valid: \['deeplabv3_r101_d8', ") as info:
        create_model("vit_huge_patch14")
    assert "did you mean" not in str(info.value)


def test_unexpected_keyword_names_it_and_the_accepted_ones() -> None:
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['in_chans'\]") as info:
        create_model("resnet50", in_chans=1)
    assert "'in_channels'" in str(info.value)
    with pytest.raises(TypeError, match=r"\['aspp_dilation'\]"):
        create_model("deeplabv3_r50_d8", aspp_dilation=(1, 6))


@pytest.mark.parametrize(
    ("name", "kwargs", "error", "match"),
    [
        (
            "resnet18",
            {"num_classes": "10"},
            TypeError,
            r"num_classes: expected an int >= 0, got '10'",
        ),
        ("fcn_small", {"num_classes": 0}, ValueError, r"num_classes: expected an int >= 1, got 0"),
        (
            "fcn_small",
            {"output_stride": 32},
            ValueError,
            r"output_stride: expected one of \[4, 8, 16\], got 32",
        ),
        (
            "fcn_r18_d8",
            {"output_stride": 12},
            ValueError,
            r"output_stride: expected one of \[8, 16, 32\], got 12",
        ),
        (
            "fcn_r18_d8",
            {"dropout": 1.5},
            ValueError,
            r"dropout: expected a float in \[0, 1\), got 1.5",
        ),
        ("fcn_r18_d8", {"dilations": (1, 6)}, ValueError, "dilations: only used by the ASPP head"),
        (
            "small_cnn",
            {"in_channels": True},
            TypeError,
            r"in_channels: expected an int >= 1, got True",
        ),
        (
            "small_cnn",
            {"widths": (8, 16)},
            ValueError,
            r"widths: expected 4 channel counts, got \(8, 16\)",
        ),
        (
            "resnet32_cifar",
            {"drop_rate": -0.5},
            ValueError,
            r"drop_rate: expected a float in \[0, 1\)",
        ),
    ],
)
def test_bad_values_name_argument_expected_and_received(
    name: str, kwargs: dict, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        create_model(name, **kwargs)


def test_builders_show_their_real_keywords() -> None:
    parameters = inspect.signature(models.registry.get_model_entry("fcn_r50_d8").builder).parameters
    assert list(parameters)[:3] == ["num_classes", "in_channels", "output_stride"]
    assert parameters["num_classes"].default == 19
    assert parameters["aux_head"].default is True
    assert "depth" not in parameters and "head" not in parameters
    assert (
        inspect.signature(models.registry.get_model_entry("resnet18").builder)
        .parameters["num_classes"]
        .default
        == 1000
    )


def test_register_model() -> None:
    @register_model(task="classification", name="_test_linear")
    def _test_linear(num_classes: int = 3) -> nn.Module:
        """A linear layer."""
        return nn.Linear(2, num_classes)

    try:
        assert "_test_linear" in list_models(task="classification")
        assert create_model("_test_linear", num_classes=4).out_features == 4
        with pytest.raises(ValueError, match="'_test_linear' is already registered"):
            register_model(task="classification", name="_test_linear")(_test_linear)
    finally:
        MODELS.unregister("_test_linear")
    with pytest.raises(ValueError, match="task: expected one of"):
        register_model(task="detection")


def _model_modules() -> list[str]:
    return ["semantic_anchors.models"] + [
        info.name for info in pkgutil.walk_packages(models.__path__, "semantic_anchors.models.")
    ]


@pytest.mark.parametrize("module_name", _model_modules())
def test_docstring_examples_run(module_name: str) -> None:
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0
