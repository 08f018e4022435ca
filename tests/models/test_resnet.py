"""ResNet specifics: torchvision parameter counts and keys, deep stem, dilation, output stride."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from semantic_anchors.models import ResNet, create_model
from semantic_anchors.models.backbones.resnet import BasicBlock, Bottleneck


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# torchvision.models.resnet*(num_classes=1000): parameters and state-dict entries
TORCHVISION = {
    "resnet18": (11_689_512, 122),
    "resnet34": (21_797_672, 218),
    "resnet50": (25_557_032, 320),
    "resnet101": (44_549_160, 626),
}


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_parameter_and_key_counts_match_torchvision(name: str) -> None:
    model = create_model(name)
    params, keys = TORCHVISION[name]
    assert n_params(model) == params
    assert len(model.state_dict()) == keys


def test_resnet50_torchvision_key_names_and_shapes() -> None:
    state = create_model("resnet50").state_dict()
    expected = {
        "conv1.weight": (64, 3, 7, 7),
        "bn1.weight": (64,),
        "bn1.running_mean": (64,),
        "bn1.num_batches_tracked": (),
        "layer1.0.conv1.weight": (64, 64, 1, 1),
        "layer1.0.conv2.weight": (64, 64, 3, 3),
        "layer1.0.conv3.weight": (256, 64, 1, 1),
        "layer1.0.downsample.0.weight": (256, 64, 1, 1),
        "layer1.0.downsample.1.running_var": (256,),
        "layer2.0.downsample.0.weight": (512, 256, 1, 1),
        "layer3.5.bn3.bias": (1024,),
        "layer4.0.downsample.0.weight": (2048, 1024, 1, 1),
        "layer4.2.conv3.weight": (2048, 512, 1, 1),
        "layer4.2.bn3.running_mean": (2048,),
        "fc.weight": (1000, 2048),
        "fc.bias": (1000,),
    }
    for key, shape in expected.items():
        assert key in state, key
        assert tuple(state[key].shape) == shape, key
    # torchvision has a downsample only in the first block of a stage
    assert not any(k.startswith(("layer4.1.downsample", "layer4.2.downsample")) for k in state)
    assert not any(k.startswith("stem.") for k in state)


def test_resnet18_torchvision_key_names() -> None:
    state = create_model("resnet18").state_dict()
    for key in ("layer1.1.conv2.weight", "layer2.0.downsample.0.weight", "layer4.1.bn2.weight"):
        assert key in state
    assert "layer1.0.downsample.0.weight" not in state  # 64 -> 64 at stride 1: no projection
    assert "layer1.0.conv3.weight" not in state


def test_deep_stem_is_resnet_v1c() -> None:
    model = create_model("resnet50", deep_stem=True)
    state = model.state_dict()
    assert "conv1.weight" not in state and "bn1.weight" not in state
    assert state["stem.0.weight"].shape == (32, 3, 3, 3)
    assert state["stem.3.weight"].shape == (32, 32, 3, 3)
    assert state["stem.6.weight"].shape == (64, 32, 3, 3)
    assert state["stem.7.running_mean"].shape == (64,)
    assert model.stem[0].stride == (2, 2)
    # three 3x3 convs (864 + 9216 + 18432) + 3 BNs replace the 7x7 conv (9408) + 1 BN
    assert n_params(model) == 25_557_032 - 9408 - 128 + 864 + 9216 + 18432 + 2 * (32 + 32 + 64)


@pytest.mark.parametrize("depth", [18, 50])
@pytest.mark.parametrize(
    ("output_stride", "sizes"), [(32, (16, 8, 4, 2)), (16, (16, 8, 4, 4)), (8, (16, 8, 8, 8))]
)
def test_stage_sizes_follow_output_stride(
    depth: int, output_stride: int, sizes: tuple[int, ...]
) -> None:
    model = ResNet(depth, num_classes=0, output_stride=output_stride).eval()
    with torch.no_grad():
        stages = model.forward_stages(torch.randn(1, 3, 64, 64))
    assert [s.shape[-1] for s in stages] == list(sizes)
    assert [s.shape[1] for s in stages] == list(model.stage_channels)


def test_dilation_replaces_stride_as_torchvision() -> None:
    """``output_stride=8`` equals torchvision's ``replace_stride_with_dilation=[F, T, T]``."""
    model = ResNet(50, output_stride=8)
    blocks = {name: m for name, m in model.named_modules() if isinstance(m, Bottleneck)}
    dilations = {name: (block.conv2.stride, block.conv2.dilation) for name, block in blocks.items()}
    assert dilations["layer2.0"] == ((2, 2), (1, 1))
    assert dilations["layer3.0"] == ((1, 1), (1, 1))  # the first block keeps the old dilation
    assert dilations["layer3.1"] == ((1, 1), (2, 2))
    assert dilations["layer4.0"] == ((1, 1), (2, 2))
    assert dilations["layer4.2"] == ((1, 1), (4, 4))
    assert model.layer3[0].downsample[0].stride == (1, 1)
    # dilation never changes the parameters
    assert n_params(model) == n_params(ResNet(50))


def test_basic_block_dilation() -> None:
    model = ResNet(18, num_classes=0, output_stride=16)
    block = model.layer4[1]
    assert isinstance(block, BasicBlock)
    assert block.conv1.dilation == (2, 2) and block.conv2.dilation == (2, 2)
    assert block.conv1.padding == (2, 2)


def test_headless_backbone_has_no_fc() -> None:
    model = ResNet(50, num_classes=0)
    assert not any(k.startswith("fc.") for k in model.state_dict())
    assert n_params(model) == 25_557_032 - 2048 * 1000 - 1000
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 2048)


def test_zero_init_residual() -> None:
    model = ResNet(50, zero_init_residual=True)
    blocks = [m for m in model.modules() if isinstance(m, Bottleneck)]
    assert len(blocks) == 16
    assert all(torch.count_nonzero(b.bn3.weight.detach()) == 0 for b in blocks)


def test_in_channels_one() -> None:
    model = ResNet(18, num_classes=3, in_channels=1)
    assert model.conv1.weight.shape == (64, 1, 7, 7)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 3)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"depth": 20}, ValueError, r"depth: expected one of \[18, 34, 50, 101\], got 20"),
        ({"output_stride": 4}, ValueError, r"output_stride: expected one of \[8, 16, 32\], got 4"),
        ({"in_channels": 0}, ValueError, r"in_channels: expected an int >= 1, got 0"),
        ({"num_classes": -1}, ValueError, r"num_classes: expected an int >= 0, got -1"),
        ({"num_classes": 2.0}, TypeError, r"num_classes: expected an int >= 0, got 2.0"),
        ({"drop_rate": 1.0}, ValueError, r"drop_rate: expected a float in \[0, 1\), got 1.0"),
    ],
)
def test_bad_arguments(kwargs: dict, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        ResNet(**kwargs)
