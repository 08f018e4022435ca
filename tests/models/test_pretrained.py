"""Loading local torchvision / mmcv format checkpoints (``pretrained=path``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from semantic_anchors.models import ResNet, create_model, load_pretrained, read_state_dict


def same_parameters(
    a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], prefix: str = ""
) -> bool:
    return all(torch.equal(a[prefix + k], v) for k, v in b.items())


@pytest.fixture(scope="module")
def torchvision_resnet18(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A torchvision-format ResNet-18 ImageNet checkpoint (random weights), written to disk."""
    torch.manual_seed(7)
    state = ResNet(18, num_classes=1000).state_dict()
    state = {
        k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v for k, v in state.items()
    }
    path = tmp_path_factory.mktemp("weights") / "resnet18-f37072fd.pth"
    torch.save(state, path)
    return path, state


def test_loads_every_tensor(torchvision_resnet18: tuple[Path, dict]) -> None:
    path, state = torchvision_resnet18
    model = create_model("resnet18", pretrained=str(path))
    assert same_parameters(model.state_dict(), state)


def test_other_num_classes_keeps_a_fresh_fc(torchvision_resnet18: tuple[Path, dict]) -> None:
    path, state = torchvision_resnet18
    model = create_model("resnet18", num_classes=10, pretrained=path)
    loaded = model.state_dict()
    assert loaded["fc.weight"].shape == (10, 512)
    assert same_parameters(loaded, {k: v for k, v in state.items() if not k.startswith("fc.")})


def test_one_channel_input_sums_the_first_conv(torchvision_resnet18: tuple[Path, dict]) -> None:
    path, state = torchvision_resnet18
    model = create_model("resnet18", num_classes=10, in_channels=1, pretrained=path)
    expected = state["conv1.weight"].sum(dim=1, keepdim=True)
    torch.testing.assert_close(model.conv1.weight.detach(), expected)
    # a grey image seen as R = G = B gives the same first activations
    grey = torch.randn(1, 1, 32, 32)
    rgb_conv = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
    rgb_conv.weight.data.copy_(state["conv1.weight"])
    torch.testing.assert_close(model.conv1(grey), rgb_conv(grey.expand(1, 3, 32, 32)))


def test_segmentor_backbone_loads_and_ignores_fc(torchvision_resnet18: tuple[Path, dict]) -> None:
    path, state = torchvision_resnet18
    model = create_model("fcn_r18_d8", deep_stem=False, pretrained=path)
    backbone = {k: v for k, v in state.items() if not k.startswith("fc.")}
    assert same_parameters(model.state_dict(), backbone, prefix="backbone.")


def test_old_checkpoint_without_num_batches_tracked(
    torchvision_resnet18: tuple[Path, dict], tmp_path: Path
) -> None:
    _, state = torchvision_resnet18
    old = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "resnet18-5c106cde.pth"
    torch.save(old, path)
    model = create_model("resnet18", pretrained=path)
    assert same_parameters(model.state_dict(), old)


def test_wrapped_and_ddp_prefixed_checkpoints(
    torchvision_resnet18: tuple[Path, dict], tmp_path: Path
) -> None:
    _, state = torchvision_resnet18
    path = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, path)
    assert read_state_dict(path).keys() == state.keys()
    model = create_model("resnet18", pretrained=path)
    assert same_parameters(model.state_dict(), state)


def test_mmcv_v1c_checkpoint_loads_into_deep_stem(tmp_path: Path) -> None:
    state = ResNet(18, num_classes=0, deep_stem=True).state_dict()
    path = tmp_path / "resnet18_v1c.pth"
    torch.save({"state_dict": state, "meta": {}}, path)
    model = create_model("deeplabv3_r18_d8", num_classes=4, pretrained=path)
    assert same_parameters(model.state_dict(), state, prefix="backbone.")


def test_missing_file() -> None:
    with pytest.raises(FileNotFoundError, match="pretrained: expected a checkpoint file.*nope.pth"):
        create_model("resnet18", pretrained="/nonexistent/nope.pth")


def test_mismatched_keys_are_listed(
    torchvision_resnet18: tuple[Path, dict], tmp_path: Path
) -> None:
    _, state = torchvision_resnet18
    broken = dict(state)
    del broken["layer2.0.conv1.weight"]
    broken["layer5.0.conv1.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    torch.save(broken, path)
    with pytest.raises(ValueError, match="Missing keys: layer2.0.conv1.weight") as info:
        create_model("resnet18", pretrained=path)
    assert "Unexpected keys: layer5.0.conv1.weight" in str(info.value)


def test_other_depth_is_refused(torchvision_resnet18: tuple[Path, dict]) -> None:
    path, _ = torchvision_resnet18
    with pytest.raises(ValueError, match=r"Missing keys: .*layer1\.2\.conv1\.weight"):
        create_model("resnet34", pretrained=path)
    with pytest.raises(ValueError, match=r"Shape mismatches: layer1.0.conv1.weight"):
        create_model("resnet50", pretrained=path)


def test_torchvision_weights_into_deep_stem_are_refused(
    torchvision_resnet18: tuple[Path, dict],
) -> None:
    path, _ = torchvision_resnet18
    with pytest.raises(ValueError, match=r"Missing keys: stem\.0\.weight") as info:
        create_model("fcn_r18_d8", pretrained=path)
    message = str(info.value)
    assert "Unexpected keys: conv1.weight, bn1.weight" in message
    assert "deep_stem=False" in message


@pytest.mark.parametrize(
    ("content", "match"),
    [(b"not a checkpoint at all", "could not read a checkpoint"), (None, "expected a state dict")],
)
def test_unreadable_or_wrong_content(tmp_path: Path, content: bytes | None, match: str) -> None:
    path = tmp_path / "bad.pth"
    if content is None:
        torch.save([1, 2, 3], path)
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=match):
        create_model("resnet18", pretrained=path)


def test_non_strict_returns_the_differences(tmp_path: Path) -> None:
    state = nn.Linear(3, 2).state_dict()
    state["extra"] = torch.zeros(1)
    path = tmp_path / "linear.pth"
    torch.save(state, path)
    target = nn.Sequential(nn.Linear(3, 2))
    missing, unexpected = load_pretrained(target, path, strict=False)
    assert missing == ["0.weight", "0.bias"]
    assert unexpected == ["weight", "bias", "extra"]


def test_a_classification_run_folder_hands_its_backbone_to_fcn_small(tmp_path: Path) -> None:
    """SAR pre-training's hand-over: ``model.pretrained=RUN`` of a ``small_cnn`` run loads its
    model weights (prefix ``model.``) into the segmentor's backbone; SAR's state is left out."""
    classifier = create_model("small_cnn", num_classes=10, in_channels=1)
    state = {f"model.{k}": v for k, v in classifier.state_dict().items()}
    state["regularizer.anchors"] = torch.randn(10, 128)
    state["regularizer.embedding.linear.0.weight"] = torch.randn(128, 128)
    (tmp_path / "checkpoints").mkdir()
    torch.save({"state_dict": state, "global_step": 5}, tmp_path / "checkpoints" / "last.ckpt")
    segmentor = create_model("fcn_small", num_classes=11, in_channels=1, pretrained=tmp_path)
    loaded = segmentor.backbone.state_dict()
    expected = {k: v for k, v in classifier.state_dict().items() if not k.startswith("fc.")}
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)
    assert read_state_dict(tmp_path).keys() == classifier.state_dict().keys()
    with pytest.raises(FileNotFoundError, match="expected a checkpoint file"):
        create_model("fcn_small", num_classes=3, pretrained=tmp_path / "no-run")
