"""The Hugging Face ``transformers`` adapters: contract, equality with HF, checkpoints, sizes."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

transformers = pytest.importorskip("transformers")

import semantic_anchors.models.hf  # noqa: E402, F401  (registers the models)
from semantic_anchors.models import create_model, get_model_entry, list_models  # noqa: E402
from tests._helpers.contract import ModelContractTests  # noqa: E402

# Tiny configs: one block per stage, narrow widths, no stochastic depth (an all-dropped residual
# branch would give all-zero gradients in the contract test).
SEGFORMER_TINY = {
    "config_overrides": {
        "hidden_sizes": [8, 16, 24, 32],
        "depths": [1, 1, 1, 1],
        "num_attention_heads": [1, 1, 2, 2],
        "decoder_hidden_size": 16,
        "drop_path_rate": 0.0,
    }
}
UPERNET_HEAD_TINY = {"hidden_size": 16, "auxiliary_channels": 8, "pool_scales": [1, 2]}
SWIN_TINY = {
    "config_overrides": UPERNET_HEAD_TINY,
    "backbone_overrides": {
        "embed_dim": 8,
        "depths": [1, 1, 1, 1],
        "num_heads": [1, 1, 2, 2],
        "window_size": 2,
        "drop_path_rate": 0.0,
    },
}
CONVNEXT_TINY = {
    "config_overrides": UPERNET_HEAD_TINY,
    "backbone_overrides": {
        "depths": [1, 1, 1, 1],
        "hidden_sizes": [8, 16, 24, 32],
        "drop_path_rate": 0.0,
    },
}
VIT_TINY = {
    "image_size": 32,
    "config_overrides": {
        "hidden_size": 16,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 32,
        "patch_size": 8,
    },
}
CONVNEXT_CLS_TINY = {"config_overrides": {"depths": [1, 1, 1, 1], "hidden_sizes": [8, 16, 24, 32]}}


def _images(shape: tuple[int, ...] = (2, 3, 64, 64)) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(1))


# --- the model contract -------------------------------------------------------------------------


class HFSegmentorTests(ModelContractTests):
    dense = True
    output_stride = 4
    has_aux = True

    def test_every_parameter_gets_a_gradient(self, model, images) -> None:
        """As the contract, over the trainable parameters: HF's SwinBackbone carries an unused
        ``swin.layernorm`` that the adapter freezes (its keys stay for checkpoints)."""
        frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
        assert frozen == (
            ["hf_model.backbone.swin.layernorm.weight", "hf_model.backbone.swin.layernorm.bias"]
            if "swin" in self.model_name
            else []
        )
        model.train()
        model.zero_grad(set_to_none=True)
        output = model.forward_train(images)
        labels = self.labels(images)
        loss = F.cross_entropy(output.logits, labels)
        if output.aux_logits is not None:
            loss = loss + model.aux_loss_weight * F.cross_entropy(output.aux_logits, labels)
        loss.backward()
        trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        missing = [n for n, p in trainable if p.grad is None or not p.grad.abs().sum() > 0]
        assert not missing, f"parameters without a (non-zero) gradient: {missing}"
        assert all(torch.isfinite(p.grad).all() for _, p in trainable)
        assert not any(b.requires_grad for b in model.buffers())
        model.zero_grad(set_to_none=True)


class TestSegformerB0Tiny(HFSegmentorTests):
    model_name = "segformer_b0"
    model_kwargs = SEGFORMER_TINY
    feat_dim = 16
    has_aux = False


class TestSegformerB0TinyGrey(HFSegmentorTests):
    model_name = "segformer_b0"
    model_kwargs = {**SEGFORMER_TINY, "in_channels": 1}
    input_shape = (2, 1, 32, 48)
    feat_dim = 16
    has_aux = False


class TestUperNetSwinTTiny(HFSegmentorTests):
    model_name = "upernet_swin_t"
    model_kwargs = SWIN_TINY
    feat_dim = 16


class TestUperNetConvNextTTiny(HFSegmentorTests):
    model_name = "upernet_convnext_t"
    model_kwargs = CONVNEXT_TINY
    feat_dim = 16


class TestUperNetSwinTTinyNoAux(HFSegmentorTests):
    model_name = "upernet_swin_t"
    model_kwargs = {**SWIN_TINY, "aux_head": False}
    input_shape = (2, 3, 32, 32)  # batch >= 2: PPM's 1x1 pooled branch has BatchNorm
    feat_dim = 16
    has_aux = False


class TestHFViTTiny(ModelContractTests):
    model_name = "hf_vit_s16"
    model_kwargs = VIT_TINY
    input_shape = (2, 3, 32, 32)
    feat_dim = 16
    dense = False


class TestHFViTTinyOtherSize(TestHFViTTiny):
    input_shape = (2, 3, 48, 40)  # position embeddings interpolated from the 32x32 grid


class TestHFConvNextTiny(ModelContractTests):
    model_name = "hf_convnext_t"
    model_kwargs = CONVNEXT_CLS_TINY
    input_shape = (2, 3, 32, 32)
    feat_dim = 32
    dense = False


# --- the adapter is the HF model ----------------------------------------------------------------


def _eval(name: str, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(name, num_classes=5, **kwargs).eval()


def test_segformer_features_and_head_give_hf_logits() -> None:
    model, x = _eval("segformer_b0", **SEGFORMER_TINY), _images()
    with torch.no_grad():
        expected = model.hf_model(pixel_values=x).logits  # (B, C, H/4, W/4)
        features = model.forward_features(x)
        torch.testing.assert_close(model.forward_head(features), expected, atol=1e-6, rtol=0)
        up = F.interpolate(expected, size=x.shape[-2:], mode="bilinear", align_corners=False)
        torch.testing.assert_close(model(x), up, atol=1e-6, rtol=0)
    head = model.hf_model.decode_head
    assert model.classifier is head.classifier
    assert features.shape == (2, 16, 16, 16)


@pytest.mark.parametrize("name, kwargs", [("upernet_swin_t", SWIN_TINY), ("upernet_convnext_t", CONVNEXT_TINY)])  # fmt: skip
def test_upernet_features_head_and_aux_give_hf_logits(name: str, kwargs: dict) -> None:
    model, x = _eval(name, **kwargs), _images()
    hf = model.hf_model
    with torch.no_grad():
        expected = hf(pixel_values=x).logits  # (B, C, H, W): HF upsamples itself
        maps = hf.backbone(x).feature_maps
        head_logits = hf.decode_head(maps)  # (B, C, H/4, W/4)
        aux = F.interpolate(hf.auxiliary_head(maps), size=x.shape[-2:], mode="bilinear")
        features = model.forward_features(x)
        torch.testing.assert_close(model.forward_head(features), head_logits, atol=1e-6, rtol=0)
        torch.testing.assert_close(model(x), expected, atol=1e-6, rtol=0)
        output = model.forward_train(x)
        torch.testing.assert_close(output.logits, expected, atol=1e-6, rtol=0)
        torch.testing.assert_close(output.aux_logits, aux, atol=1e-6, rtol=0)
    assert model.classifier is hf.decode_head.classifier
    assert model.aux_loss_weight == hf.config.auxiliary_loss_weight == 0.4


def test_forward_train_runs_the_encoder_once() -> None:
    model, x = _eval("upernet_swin_t", **SWIN_TINY), _images((1, 3, 32, 32))
    calls = []
    handle = model.hf_model.backbone.register_forward_hook(lambda *args: calls.append(1))
    with torch.no_grad():
        model.forward_train(x)
    handle.remove()
    assert len(calls) == 1


@pytest.mark.parametrize("name, kwargs", [("hf_vit_s16", VIT_TINY), ("hf_convnext_t", CONVNEXT_CLS_TINY)])  # fmt: skip
def test_classifier_features_and_head_give_hf_logits(name: str, kwargs: dict) -> None:
    model, x = _eval(name, **kwargs), _images((2, 3, 32, 32))
    extra = {"interpolate_pos_encoding": True} if name.startswith("hf_vit") else {}
    with torch.no_grad():
        expected = model.hf_model(pixel_values=x, **extra).logits
        logits = model.forward_head(model.forward_features(x))
    torch.testing.assert_close(logits, expected, atol=1e-6, rtol=0)
    assert model.classifier is model.hf_model.classifier


def test_state_dict_keys_are_the_hf_keys_under_hf_model() -> None:
    model = _eval("segformer_b0", **SEGFORMER_TINY)
    hf_keys = {f"hf_model.{key}" for key in model.hf_model.state_dict()}
    assert set(model.state_dict()) == hf_keys
    assert "hf_model.decode_head.classifier.weight" in hf_keys


# --- arguments ----------------------------------------------------------------------------------


def test_in_channels_maps_to_num_channels() -> None:
    assert _eval("segformer_b0", in_channels=1, **SEGFORMER_TINY).hf_model.config.num_channels == 1
    upernet = _eval("upernet_swin_t", in_channels=4, **SWIN_TINY)
    assert upernet.hf_model.config.backbone_config.num_channels == 4
    assert upernet.in_channels == 4


def test_bad_arguments_name_themselves() -> None:
    with pytest.raises(ValueError, match=r"config_overrides: SegformerConfig has no field\(s\) \['hidden_sizez'\]"):  # fmt: skip
        create_model("segformer_b0", config_overrides={"hidden_sizez": [8, 16, 24, 32]})
    with pytest.raises(ValueError, match=r"backbone_overrides: SwinConfig has no field"):
        create_model("upernet_swin_t", backbone_overrides={"embed_dims": 8})
    with pytest.raises(TypeError, match="config_overrides: expected a dict"):
        create_model("hf_vit_s16", config_overrides=[("hidden_size", 8)])
    with pytest.raises(ValueError, match="num_classes"):
        create_model("segformer_b0", num_classes=0)
    with pytest.raises(TypeError, match="unexpected keyword"):
        create_model("segformer_b0", output_stride=8)
    with pytest.raises(FileNotFoundError, match="pretrained: expected a local transformers folder"):
        create_model("segformer_b0", pretrained="/nonexistent/segformer")


def test_registered_names_and_tasks() -> None:
    assert list_models("segformer_b*") == [f"segformer_b{i}" for i in range(6)]
    assert list_models("upernet_*") == [
        "upernet_convnext_t",
        "upernet_swin_b",
        "upernet_swin_l",
        "upernet_swin_s",
        "upernet_swin_t",
    ]
    assert set(list_models("hf_*", task="classification")) == {
        "hf_convnext_t",
        "hf_vit_b16",
        "hf_vit_s16",
    }
    assert get_model_entry("upernet_swin_t").task == "segmentation"


# --- local checkpoints --------------------------------------------------------------------------


def _save(model: torch.nn.Module, folder: Path) -> Path:
    model.hf_model.save_pretrained(folder)
    return folder


def test_pretrained_folder_loads_untouched(tmp_path: Path) -> None:
    source = _eval("segformer_b0", **SEGFORMER_TINY)
    folder = _save(source, tmp_path / "ckpt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is re-initialised, so no warning
        loaded = create_model("segformer_b0", num_classes=5, pretrained=folder, **SEGFORMER_TINY)
    assert loaded.training
    reference = source.state_dict()
    for key, value in loaded.state_dict().items():
        torch.testing.assert_close(value, reference[key], rtol=0, atol=0, msg=key)
    assert loaded.hf_model.pretrained_report["freshly_initialised"] == []


def test_pretrained_other_class_count_reinitialises_only_the_heads(tmp_path: Path) -> None:
    source = _eval("upernet_swin_t", **SWIN_TINY)
    folder = _save(source, tmp_path / "ckpt")
    with pytest.warns(UserWarning, match="head weights freshly initialised"):
        loaded = create_model("upernet_swin_t", num_classes=7, pretrained=folder, **SWIN_TINY)
    fresh = loaded.hf_model.pretrained_report["freshly_initialised"]
    assert fresh == [
        "auxiliary_head.classifier.bias",
        "auxiliary_head.classifier.weight",
        "decode_head.classifier.bias",
        "decode_head.classifier.weight",
    ]
    assert loaded.classifier.weight.shape == (7, 16, 1, 1)
    reference = source.state_dict()
    for key, value in loaded.state_dict().items():
        if key.removeprefix("hf_model.") not in fresh:
            torch.testing.assert_close(value, reference[key], rtol=0, atol=0, msg=key)


def test_pretrained_imagenet_encoder_into_a_segmentor(tmp_path: Path) -> None:
    """An ImageNet MiT checkpoint (``SegformerForImageClassification``, as ``nvidia/mit-b0``)."""
    config = transformers.SegformerConfig(num_labels=10, **SEGFORMER_TINY["config_overrides"])
    encoder = transformers.SegformerForImageClassification(config)
    encoder.save_pretrained(tmp_path / "mit")
    with pytest.warns(UserWarning, match="decode_head"):
        model = create_model("segformer_b0", pretrained=tmp_path / "mit", **SEGFORMER_TINY)
    expected = encoder.segformer.state_dict()
    for key, value in model.hf_model.segformer.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0, msg=key)


def test_pretrained_of_another_architecture_is_an_error(tmp_path: Path) -> None:
    folder = _save(_eval("segformer_b0", **SEGFORMER_TINY), tmp_path / "ckpt")
    wider = {"config_overrides": {**SEGFORMER_TINY["config_overrides"], "hidden_sizes": [8, 16, 24, 40]}}  # fmt: skip
    with pytest.raises(
        ValueError, match=r"does not fit .* of another shape: \['segformer\.stages\.3"
    ):
        create_model("segformer_b0", num_classes=5, pretrained=folder, **wider)


# --- the real sizes -----------------------------------------------------------------------------

# Exact counts at 150 classes (ADE20K) / 1000 classes; the published figures are in the comments.
PARAMETERS = [
    ("segformer_b0", 150, 3_752_694),  # SegFormer paper: 3.8 M
    ("segformer_b1", 150, 13_715_798),  # 13.7 M
    ("segformer_b2", 150, 27_461_974),  # 27.5 M
    ("upernet_convnext_t", 150, 60_242_636),  # ConvNeXt paper: 60 M
    ("upernet_swin_t", 150, 59_943_398),  # Swin paper: 60 M
    ("hf_vit_s16", 1000, 22_050_664),  # DeiT-S: 22 M
    ("hf_convnext_t", 1000, 28_589_128),  # ConvNeXt-T: 28.6 M
]
PARAMETERS += [
    ("mask2former_tiny", 150, 1_546_070),
    ("mask2former_swin_t", 150, 47_441_169),  # Mask2Former paper, Swin-T: 47 M
]
PARAMETERS_SLOW = [
    ("segformer_b3", 150, 47_337_814),  # 47.3 M
    ("segformer_b4", 150, 64_108_374),  # 64.1 M
    ("segformer_b5", 150, 84_708_694),  # 84.7 M
    ("upernet_swin_s", 150, 81_261_302),  # 81 M
    ("upernet_swin_b", 150, 121_417_124),  # 121 M
    ("upernet_swin_l", 150, 233_966_048),  # Swin paper: 234 M
    ("hf_vit_b16", 1000, 86_567_656),  # ViT-B/16: 86.6 M
]


@pytest.mark.parametrize(
    "name, classes, expected",
    PARAMETERS + [pytest.param(*p, marks=pytest.mark.slow) for p in PARAMETERS_SLOW],
)
def test_parameter_counts_of_the_published_models(name: str, classes: int, expected: int) -> None:
    model = create_model(name, num_classes=classes)
    assert sum(p.numel() for p in model.parameters()) == expected


# --- one SAR training step through the training module ------------------------------------------


UPERNET_TRAIN_TINY = [
    "model.backbone_overrides={embed_dim: 8, depths: [1, 1, 1, 1], num_heads: [1, 1, 2, 2], "
    "window_size: 2}",
    "model.config_overrides={hidden_size: 16, auxiliary_channels: 8}",
]
UPERNET_CONVNEXT_TRAIN_TINY = [
    "model.backbone_overrides={depths: [1, 1, 1, 1], hidden_sizes: [8, 16, 24, 32], "
    "drop_path_rate: 0.0}",
    "model.config_overrides={hidden_size: 16, auxiliary_channels: 8}",
]


@pytest.mark.parametrize(
    "name, model_overrides",
    [
        ("segformer_b0", []),
        ("upernet_swin_t", UPERNET_TRAIN_TINY),
        ("upernet_convnext_t", UPERNET_CONVNEXT_TRAIN_TINY),
    ],
    ids=["segformer_b0", "upernet_swin_t-tiny", "upernet_convnext_t-tiny"],
)
def test_train_one_sar_step(name: str, model_overrides: list[str], tmp_path: Path) -> None:
    """The real SegFormer-B0 (and a tiny Swin UperNet) through the training module with SAR."""
    train = pytest.importorskip("semantic_anchors.train").train
    from tests._helpers.runs import TINY

    metrics = train(
        "synthlt-fcn-quick",
        [
            f"model.name={name}",
            *model_overrides,
            *TINY,
            "trainer.max_steps=1",
            "regularizer.name=sar",
        ],
        out_dir=tmp_path / "run",
    )
    assert metrics["step"] == 1 and 0 <= metrics["mIoU"] <= 100
    assert (tmp_path / "run" / "metrics.json").is_file()


# Tiny ViT-S/16 and ConvNeXt-T (widths 16 / 32: SAR's feat_dim) on 32x32 crops of Fashion-MNIST.
CLASSIFIER_TRAIN_TINY = {
    "hf_vit_s16": (
        16,
        [
            "model.image_size=32",
            "model.config_overrides={hidden_size: 16, num_hidden_layers: 1, "
            "num_attention_heads: 2, intermediate_size: 32, patch_size: 8}",
        ],
    ),
    "hf_convnext_t": (
        32,
        ["model.config_overrides={depths: [1, 1, 1, 1], hidden_sizes: [8, 16, 24, 32]}"],
    ),
}


@pytest.mark.parametrize("name", list(CLASSIFIER_TRAIN_TINY))
def test_train_one_sar_step_of_the_classifiers(name: str, tmp_path: Path) -> None:
    """Tiny HF classifiers through the long-tailed Fashion-MNIST recipe with SAR (vector form).

    The data are the IDX files the data tests write (30 ... 3 training images per class, 4 test
    images per class), so the Debian package is not needed.
    """
    train = pytest.importorskip("semantic_anchors.train").train
    from semantic_anchors.train.checkpoint import load_checkpoint
    from tests._helpers.writers import write_fashion

    root = write_fashion(tmp_path / "fashion", train_per_class=30, test_per_class=4)
    feat_dim, model_overrides = CLASSIFIER_TRAIN_TINY[name]
    metrics = train(
        "fashion-lt-smallcnn-quick",
        [
            f"model.name={name}",
            *model_overrides,
            f"data.root={root}",
            "data.options={imbalance_factor: 10, n_max: 30}",
            "data.crop_size=32",  # ConvNeXt's stride 32 needs more than 28 pixels
            "data.batch_size=8",
            "data.val_batch_size=40",
            "data.num_workers=0",
            "trainer.progress_bar=false",
            "trainer.log_every=1",
            "trainer.max_steps=1",
            "regularizer.name=sar",
        ],
        out_dir=tmp_path / "run",
    )
    assert metrics["step"] == 1 and 0 <= metrics["top1"] <= 100 and 0 <= metrics["mAcc"] <= 100
    state = load_checkpoint(tmp_path / "run/checkpoints/last.ckpt")["state_dict"]
    assert state["regularizer.anchors"].shape == (10, feat_dim)
    assert state["regularizer.semantic_anchors"].shape == (10, feat_dim)
    assert state["regularizer.embedding.linear.0.weight"].shape == (feat_dim, feat_dim)
