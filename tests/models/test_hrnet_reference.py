"""HRNetV2, FCN-HR and OCRNet against mmsegmentation's own code, for the same weights.

mmseg is the reference here as sklearn is for the metrics. It needs the ``[ref]`` install;
without it every test here skips. ``tests/_helpers/mmseg_import.py`` imports it (with a placeholder for the
``mmcv.ops`` that mmcv-lite lacks: HRNet, FCNHead, OCRHead, their bases and the segmentors call
no op).
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import nn

import semantic_anchors.models.segmentors.hrnet  # noqa: F401  (registers fcn_hr* / ocrnet_hr*)
from semantic_anchors.models import create_model
from tests._helpers.mmseg_import import imported_mmseg

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

WIDTHS = {18: (18, 36, 72, 144), 48: (48, 96, 192, 384)}
NUM_CLASSES = 7


@pytest.fixture(scope="module")
def mmseg() -> Iterator[types.SimpleNamespace]:
    """mmseg's ``MODELS`` registry, imported with the placeholder ``mmcv.ops`` if need be."""
    with imported_mmseg() as namespace:
        yield namespace


def mmseg_config(width: int, head: str) -> dict[str, Any]:
    """mmseg's ``fcn_hr*`` / ``ocrnet_hr*`` model config (BN for SyncBN: same keys, one process)."""
    branches = WIDTHS[width]
    norm = {"type": "BN", "requires_grad": True}
    stages = {
        "stage1": {"num_modules": 1, "num_branches": 1, "block": "BOTTLENECK"},
        "stage2": {"num_modules": 1, "num_branches": 2, "block": "BASIC"},
        "stage3": {"num_modules": 4, "num_branches": 3, "block": "BASIC"},
        "stage4": {"num_modules": 3, "num_branches": 4, "block": "BASIC"},
    }
    for index, stage in enumerate(stages.values()):
        n = stage["num_branches"]
        stage["num_blocks"] = (4,) * n
        stage["num_channels"] = (64,) if index == 0 else branches[:n]
    common = {
        "in_channels": list(branches),
        "in_index": (0, 1, 2, 3),
        "input_transform": "resize_concat",
        "dropout_ratio": -1,
        "num_classes": NUM_CLASSES,
        "norm_cfg": norm,
        "align_corners": False,
    }
    fcn = {
        "type": "FCNHead",
        "channels": sum(branches),
        "kernel_size": 1,
        "num_convs": 1,
        "concat_input": False,
        **common,
    }
    backbone = {"type": "HRNet", "norm_cfg": norm, "norm_eval": False, "extra": stages}
    if head == "fcn":
        return {"type": "EncoderDecoder", "backbone": backbone, "decode_head": fcn}
    ocr = {"type": "OCRHead", "channels": 512, "ocr_channels": 256, **common}
    return {
        "type": "CascadeEncoderDecoder",
        "num_stages": 2,
        "backbone": backbone,
        "decode_head": [fcn, ocr],
    }


def randomize(model: nn.Module, seed: int) -> None:
    """Random weights and BatchNorm statistics that keep activations of order one."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.normal_(0, fan_in**-0.5, generator=generator)
                if module.bias is not None:
                    module.bias.uniform_(-0.1, 0.1, generator=generator)
            elif isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.1, 0.5, generator=generator)
                module.bias.uniform_(-0.2, 0.2, generator=generator)
                module.running_mean.uniform_(-0.2, 0.2, generator=generator)
                module.running_var.uniform_(0.5, 2.0, generator=generator)


def reference_and_ours(mmseg: types.SimpleNamespace, width: int, head: str) -> tuple[Any, Any]:
    """mmseg's segmentor with random weights, and ours loaded from its state dict (strict)."""
    torch.manual_seed(0)
    reference = mmseg.MODELS.build(mmseg_config(width, head))
    randomize(reference, seed=width)
    ours = create_model(f"{'fcn' if head == 'fcn' else 'ocrnet'}_hr{width}", NUM_CLASSES)
    result = ours.load_state_dict(reference.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return reference.eval(), ours.eval()


def max_difference(actual: torch.Tensor, expected: torch.Tensor) -> float:
    assert actual.shape == expected.shape
    return (actual - expected).abs().max().item()


@pytest.mark.parametrize("width", [18, pytest.param(48, marks=pytest.mark.slow)])
@pytest.mark.parametrize("head", ["fcn", "ocr"])
def test_state_dict_keys_and_shapes_equal_mmseg(
    mmseg: types.SimpleNamespace, width: int, head: str
) -> None:
    reference = mmseg.MODELS.build(mmseg_config(width, head))
    ours = create_model(f"{'fcn' if head == 'fcn' else 'ocrnet'}_hr{width}", NUM_CLASSES)
    expected = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    actual = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert sorted(set(expected) - set(actual)) == [], "missing in ours"
    assert sorted(set(actual) - set(expected)) == [], "not in mmseg"
    assert actual == expected
    backbone = {k: v for k, v in expected.items() if k.startswith("backbone.")}
    ours_backbone = [f"backbone.{k}" for k in ours.backbone.state_dict()]
    assert list(backbone) == ours_backbone, "backbone keys in mmseg's order"
    assert sum(p.numel() for p in reference.parameters()) == sum(
        p.numel() for p in ours.parameters()
    )


@pytest.mark.parametrize("width", [18, pytest.param(48, marks=pytest.mark.slow)])
@pytest.mark.parametrize("head", ["fcn", "ocr"])
def test_outputs_equal_mmseg(mmseg: types.SimpleNamespace, width: int, head: str) -> None:
    """Backbone levels, head features and logits equal mmseg's for the same weights (eval)."""
    reference, ours = reference_and_ours(mmseg, width, head)
    images = torch.randn(2, 3, 64, 80, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected_levels = reference.extract_feat(images)
        levels = ours.backbone.forward_stages(images)
        expected_logits = reference._forward(images)  # (B, C, H / 4, W / 4), before upsampling
        features = ours.forward_features(images)
        logits = ours.forward_head(features)
        output = ours.forward_train(images)
        if head == "fcn":
            expected_features = reference.decode_head._forward_feature(expected_levels)
        else:
            coarse = reference.decode_head[0].forward(expected_levels)
            expected_aux = coarse
    differences = [max_difference(a, e) for a, e in zip(levels, expected_levels, strict=True)]
    differences.append(max_difference(logits, expected_logits))
    if head == "fcn":
        differences.append(max_difference(features, expected_features))
    else:
        upsampled = torch.nn.functional.interpolate(
            expected_aux, size=images.shape[-2:], mode="bilinear", align_corners=False
        )
        differences.append(max_difference(output.aux_logits, upsampled))
    print(f"hr{width} {head}: max |ours - mmseg| = {max(differences):.3g}")
    assert max(differences) < 1e-4
    for actual, expected in zip(levels, expected_levels, strict=True):
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logits, expected_logits, rtol=1e-5, atol=1e-5)


def test_mmseg_output_for_an_odd_input_size(mmseg: types.SimpleNamespace) -> None:
    """Sizes that are not multiples of 32: mmseg upsamples x2 then resizes, as we do."""
    reference, ours = reference_and_ours(mmseg, 18, "ocr")
    images = torch.randn(1, 3, 57, 70, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(
            ours.forward_head(ours.forward_features(images)),
            reference._forward(images),
            rtol=1e-5,
            atol=1e-5,
        )
