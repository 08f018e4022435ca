"""HRNetV2, its FCN and OCR segmentors: the model contract, mmseg's parameter counts and keys."""

from __future__ import annotations

import pytest
import torch

from semantic_anchors.models import create_model
from semantic_anchors.models.backbones.hrnet import HRNet, HRStage, hrnetv2_w18, hrnetv2_w48
from semantic_anchors.models.heads.fcn_concat import ResizeConcatFCNHead
from semantic_anchors.models.heads.ocr import OCRHead, gather_object_regions
from semantic_anchors.models.segmentors.hrnet import build_hrnet_segmentor
from semantic_anchors.models.segmentors.multi_level import MultiLevelSegmentor
from tests._helpers.contract import ModelContractTests


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- the model contract ---------------------------------------------------------------------


class HRSegmentorTests(ModelContractTests):
    dense = True
    output_stride = 4
    input_shape = (2, 3, 64, 64)


class TestFCNHR18(HRSegmentorTests):
    model_name = "fcn_hr18"
    feat_dim = 270


class TestOCRNetHR18(HRSegmentorTests):
    model_name = "ocrnet_hr18"
    feat_dim = 512
    has_aux = True


class TestFCNHR18OneChannelOddSize(HRSegmentorTests):
    """Odd sizes: the branches round up (45 -> 12, 6, 3, 2) and the fusion resizes exactly."""

    model_name = "fcn_hr18"
    model_kwargs = {"in_channels": 1}
    input_shape = (2, 1, 48, 45)
    feat_dim = 270

    def test_features_at_output_stride(self, model, images) -> None:
        with torch.no_grad():
            assert model.eval().forward_features(images).shape == (2, 270, 12, 12)


@pytest.mark.slow
class TestFCNHR48(HRSegmentorTests):
    model_name = "fcn_hr48"
    input_shape = (2, 3, 32, 32)
    feat_dim = 720


@pytest.mark.slow
class TestOCRNetHR48(HRSegmentorTests):
    model_name = "ocrnet_hr48"
    input_shape = (2, 3, 32, 32)
    feat_dim = 512
    has_aux = True


# --- parameter counts of mmseg's models -----------------------------------------------------


def test_backbone_parameter_counts() -> None:
    assert count(hrnetv2_w18()) == 9_562_260
    assert count(hrnetv2_w48()) == 65_325_120


@pytest.mark.parametrize(
    ("num_classes", "fcn", "ocr"),
    [(19, 65_858_659, 70_371_446), (150, 65_953_110, 70_533_100), (59, 65_887_499, 70_420_806)],
)
def test_hr48_segmentor_parameter_counts(num_classes: int, fcn: int, ocr: int) -> None:
    assert count(create_model("fcn_hr48", num_classes)) == fcn
    assert count(create_model("ocrnet_hr48", num_classes)) == ocr


# --- structure: mmseg's names, strides, heads ----------------------------------------------


def test_state_dict_names_follow_mmseg() -> None:
    """A few keys of each kind (the full comparison with mmseg is in test_hrnet_reference.py)."""
    keys = set(create_model("ocrnet_hr18", 19).state_dict())
    for key in (
        "backbone.conv1.weight",
        "backbone.bn2.running_var",
        "backbone.layer1.0.downsample.1.weight",
        "backbone.layer1.3.conv3.weight",
        "backbone.transition1.0.0.weight",
        "backbone.transition1.1.0.1.running_mean",
        "backbone.transition3.3.0.0.weight",
        "backbone.stage2.0.branches.1.3.bn2.bias",
        "backbone.stage3.3.fuse_layers.0.2.1.weight",
        "backbone.stage4.2.fuse_layers.3.0.2.0.weight",
        "backbone.stage4.2.fuse_layers.3.2.0.1.num_batches_tracked",
        "decode_head.0.convs.0.conv.weight",
        "decode_head.0.conv_seg.bias",
        "decode_head.1.bottleneck.conv.weight",
        "decode_head.1.object_context_block.key_project.1.conv.weight",
        "decode_head.1.object_context_block.value_project.bn.weight",
        "decode_head.1.object_context_block.out_project.conv.weight",
        "decode_head.1.object_context_block.bottleneck.conv.weight",
        "decode_head.1.conv_seg.weight",
    ):
        assert key in keys, key
    assert not any(k.startswith(("backbone.classifier", "auxiliary_head")) for k in keys)
    fcn_keys = set(create_model("fcn_hr18", 19).state_dict())
    assert "decode_head.convs.0.conv.weight" in fcn_keys
    assert {k.removeprefix("decode_head.0.") for k in keys if k.startswith("decode_head.0.")} == {
        k.removeprefix("decode_head.") for k in fcn_keys if k.startswith("decode_head.")
    }


def test_backbone_branches_and_channels() -> None:
    backbone = hrnetv2_w18().eval()
    assert backbone.stage_channels == (18, 36, 72, 144)
    assert backbone.stage_strides == (4, 8, 16, 32)
    with torch.no_grad():
        levels = backbone.forward_stages(torch.randn(1, 3, 64, 96))
    assert [tuple(x.shape) for x in levels] == [
        (1, 18, 16, 24),
        (1, 36, 8, 12),
        (1, 72, 4, 6),
        (1, 144, 2, 3),
    ]
    assert backbone.forward_features(torch.randn(1, 3, 64, 64)).shape == (1, 144)


def test_ocrnet_aux_logits_are_the_fcn_head() -> None:
    torch.manual_seed(0)
    model = create_model("ocrnet_hr18", num_classes=3).eval()
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out = model.forward_train(images)
        coarse = model.decode_head[0](model.backbone.forward_stages(images))  # (1, 3, 16, 16)
    expected = torch.nn.functional.interpolate(coarse, size=(64, 64), mode="bilinear")
    torch.testing.assert_close(out.aux_logits, expected)
    assert model.aux_loss_weight == 0.4
    assert create_model("fcn_hr18", 3).aux_loss_weight == 0.0


def test_gather_object_regions_is_a_softmax_weighted_mean() -> None:
    features = torch.randn(2, 5, 3, 4, dtype=torch.float64)
    logits = torch.randn(2, 3, 3, 4, dtype=torch.float64)
    regions = gather_object_regions(features, logits)  # (2, 5, 3, 1)
    for b in range(2):
        for k in range(3):
            weights = logits[b, k].flatten().softmax(0)  # (12,)
            expected = (features[b].flatten(1) * weights).sum(1)  # (5,)
            torch.testing.assert_close(regions[b, :, k, 0], expected)


def test_ocr_head_gradcheck_float64() -> None:
    torch.manual_seed(0)
    head = OCRHead((2, 3), 4, num_classes=2, ocr_channels=3).double().eval()
    levels = [
        torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True),
        torch.randn(1, 3, 2, 2, dtype=torch.float64, requires_grad=True),
    ]
    previous = torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, p: head([a, b], p), (*levels, previous))


# --- pretrained weights ---------------------------------------------------------------------


def test_pretrained_imagenet_checkpoint_loads(tmp_path) -> None:
    """mmseg-format HRNet weights load; HRNet's ImageNet classifier keys are ignored."""
    torch.manual_seed(1)
    source = hrnetv2_w18()
    state = source.state_dict()
    state["incre_modules.0.0.conv1.weight"] = torch.zeros(1)
    state["classifier.weight"] = torch.zeros(1000, 2048)
    path = tmp_path / "hrnetv2_w18.pth"
    torch.save({"state_dict": state}, path)
    model = create_model("fcn_hr18", 4, pretrained=path)
    loaded = model.backbone.state_dict()
    for key, value in source.state_dict().items():
        assert torch.equal(loaded[key], value), key
    grey = hrnetv2_w18(in_channels=1, pretrained=path)
    torch.testing.assert_close(grey.conv1.weight, source.conv1.weight.sum(1, keepdim=True))


def test_pretrained_of_another_width_names_the_keys(tmp_path) -> None:
    path = tmp_path / "hrnetv2_w18.pth"
    torch.save(hrnetv2_w18().state_dict(), path)
    with pytest.raises(ValueError, match=r"Shape mismatches: transition1\.0\.0\.weight.*width 48"):
        hrnetv2_w48(pretrained=path)
    with pytest.raises(FileNotFoundError, match="pretrained"):
        hrnetv2_w18(pretrained=tmp_path / "absent.pth")


# --- argument and input checks --------------------------------------------------------------


def test_bad_arguments_name_themselves() -> None:
    with pytest.raises(ValueError, match="num_classes: HRNet is a headless backbone"):
        hrnetv2_w18(num_classes=1000)
    with pytest.raises(ValueError, match="stages: expected four HRStage"):
        HRNet([HRStage(1, "BOTTLENECK", (4,), (64,))])
    with pytest.raises(ValueError, match="head: expected one of"):
        build_hrnet_segmentor(18, "aspp")
    with pytest.raises(ValueError, match="kernel_size: expected an odd int"):
        ResizeConcatFCNHead((4, 8), 12, 3, kernel_size=2)
    with pytest.raises(TypeError, match="in_channels: expected a non-empty sequence"):
        ResizeConcatFCNHead(12, 12, 3)
    backbone = hrnetv2_w18()
    with pytest.raises(ValueError, match=r"decode_head\[0\]: expected in_channels=\(18, 36, 72"):
        MultiLevelSegmentor(backbone, ResizeConcatFCNHead((48, 96, 192, 384), 720, 3))
    with pytest.raises(ValueError, match=r"decode_head\[1\]: expected num_classes=3"):
        levels = backbone.stage_channels
        MultiLevelSegmentor(backbone, [ResizeConcatFCNHead(levels, 270, 3), OCRHead(levels, 16, 4)])


def test_heads_reject_wrong_levels() -> None:
    head = OCRHead((4, 8), 16, num_classes=3, ocr_channels=8)
    levels = [torch.randn(1, 4, 8, 8), torch.randn(1, 8, 4, 4)]
    with pytest.raises(ValueError, match="levels: expected 2 feature maps, got 1"):
        head(levels[:1], torch.randn(1, 3, 8, 8))
    with pytest.raises(ValueError, match=r"levels: expected .* C = \(4, 8\), got \(8, 4\)"):
        head(levels[::-1], torch.randn(1, 3, 8, 8))
    with pytest.raises(ValueError, match=r"previous_logits: expected shape \(1, 3, 8, 8\)"):
        head(levels, torch.randn(1, 3, 4, 4))


@pytest.mark.parametrize("name", ["fcn_hr18", "ocrnet_hr18"])
def test_train_one_sar_step(name, tmp_path):
    """HRNet segmentors through the training module with SAR (the OCR cascade's aux loss too)."""
    from semantic_anchors.train import train
    from semantic_anchors.train.checkpoint import load_checkpoint
    from tests._helpers.runs import TINY

    metrics = train("synthlt-fcn-quick", [f"model.name={name}", *TINY, "trainer.max_steps=1",
                    "regularizer.name=sar", "data.batch_size=2"], out_dir=tmp_path / "run")  # fmt: skip
    assert metrics["step"] == 1 and 0 <= metrics["mIoU"] <= 100
    state = load_checkpoint(tmp_path / "run/checkpoints/last.ckpt")["state_dict"]
    assert state["regularizer.anchors"].shape[1] == (270 if name == "fcn_hr18" else 512)


@pytest.mark.slow
@pytest.mark.parametrize("name, feat_dim", [("fcn_hr48", 720), ("ocrnet_hr48", 512)])
def test_train_one_sar_step_hr48(name, feat_dim, tmp_path):
    """The real-size HRNet-W48 segmentors (the paper's), one SAR step on a few 32x32 images."""
    from semantic_anchors.train import train
    from semantic_anchors.train.checkpoint import load_checkpoint
    from tests._helpers.runs import TINY

    metrics = train("synthlt-fcn-quick", [f"model.name={name}", *TINY, "trainer.max_steps=1",
                    "regularizer.name=sar", "data.options={num_images: 4, image_size: 32}",
                    "data.val_options={num_images: 2}", "data.crop_size=32",
                    "data.batch_size=2", "data.val_batch_size=2"], out_dir=tmp_path / "run")  # fmt: skip
    assert metrics["step"] == 1 and 0 <= metrics["mIoU"] <= 100
    state = load_checkpoint(tmp_path / "run/checkpoints/last.ckpt")["state_dict"]
    assert state["regularizer.anchors"].shape[1] == feat_dim  # 48 + 96 + 192 + 384 for FCN
