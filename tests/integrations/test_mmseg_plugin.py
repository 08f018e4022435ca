"""The mmseg 1.x plug-in against mmseg's own segmentors and our regularizer called directly.

Models are built by mmseg's ``MODELS.build`` from tiny configs (ResNetV1c-18 with 8 base
channels, an FCN decode head of 16 channels with dropout, an auxiliary FCN head, mmseg's
``SegDataPreProcessor``). The reference for the SAR loss is :class:`SemanticAnchorRegularizer`
called on the head's pre-classifier features computed by hand (``FCNHead._forward_feature``, or
the OCR head's modules one by one), with the head's ``conv_seg``. Skips without mmseg (the
``[ref]`` install), except the import-error tests.
"""

from __future__ import annotations

import copy
import importlib
import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from semantic_anchors import SemanticAnchorRegularizer
from tests._helpers.mmseg_import import imported_mmseg

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

PLUGIN = "semantic_anchors.integrations.mmseg"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "models.md"
NUM_CLASSES = 3
CHANNELS = 16  # the decode head's `channels`: SAR's feat_dim
IMAGE = (37, 45)  # padded to (40, 48) by the preprocessor: the padding is ignore (255)
NORM = {"type": "BN", "requires_grad": True}
SAR_KEYS = {"loss_sar", "sar.aux", "sar.p2a", "sar.gate_open", "sar.num_confident"}


@pytest.fixture(autouse=True)
def _one_intra_op_thread() -> Iterator[None]:
    """One intra-op thread: tiny inputs gain nothing from more on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def mmseg() -> Iterator[types.SimpleNamespace]:
    """mmseg's ``MODELS`` with the plug-in imported (as a config's ``custom_imports`` does)."""
    with imported_mmseg() as namespace:
        importlib.import_module(PLUGIN)
        scope = importlib.import_module("mmengine.registry").DefaultScope
        namespace.scope = scope
        yield namespace


def fcn_head(in_channels: int, channels: int, in_index: int, **changes: Any) -> dict[str, Any]:
    head = {
        "type": "FCNHead",
        "in_channels": in_channels,
        "in_index": in_index,
        "channels": channels,
        "num_convs": 1,
        "concat_input": True,
        "dropout_ratio": 0.1,
        "num_classes": NUM_CLASSES,
        "norm_cfg": NORM,
        "align_corners": False,
    }
    return {**head, **changes}


def tiny_config(kind: str = "SAREncoderDecoder", **changes: Any) -> dict[str, Any]:
    """A ResNetV1c-18 (base 8 channels, output stride 8) + FCN segmentor; ``changes`` override."""
    config = {
        "type": kind,
        "data_preprocessor": {
            "type": "SegDataPreProcessor",
            "mean": [120.0, 115.0, 100.0],
            "std": [60.0, 58.0, 57.0],
            "size": (40, 48),
            "pad_val": 0,
            "seg_pad_val": 255,
        },
        "backbone": {
            "type": "ResNetV1c",
            "depth": 18,
            "stem_channels": 8,
            "base_channels": 8,
            "out_indices": (2, 3),
            "strides": (1, 2, 1, 1),
            "dilations": (1, 1, 2, 4),
            "norm_cfg": NORM,
        },
        "decode_head": fcn_head(64, CHANNELS, in_index=1),
        "auxiliary_head": fcn_head(32, 8, in_index=0, loss_decode={"type": "CrossEntropyLoss"}),
        "train_cfg": {},
        "test_cfg": {"mode": "whole"},
    }
    config["auxiliary_head"]["loss_decode"]["loss_weight"] = 0.4
    return {**config, **changes}


def build(mmseg: types.SimpleNamespace, config: dict[str, Any], seed: int = 0) -> Any:
    """``MODELS.build`` as mmseg's runner calls it: a ``ConfigDict``, default scope ``mmseg``."""
    torch.manual_seed(seed)
    config_dict = importlib.import_module("mmengine.config").ConfigDict(copy.deepcopy(config))
    with mmseg.scope.overwrite_default_scope("mmseg"):
        return mmseg.MODELS.build(config_dict)


def plain_copy(mmseg: types.SimpleNamespace, model: Any, config: dict[str, Any]) -> Any:
    """mmseg's own segmentor (no ``sar``) holding ``model``'s weights (everything but ``sar.*``)."""
    plain_config = {k: v for k, v in config.items() if k != "sar"}
    plain_config["type"] = config["type"].removeprefix("SAR")
    plain = build(mmseg, plain_config, seed=99)
    weights = {k: v for k, v in model.state_dict().items() if not k.startswith("sar.")}
    plain.load_state_dict(weights, strict=True)
    return plain.train(model.training)


def batch(model: Any, seed: int, training: bool) -> dict[str, Any]:
    """Two preprocessed images with ground truth in ``[0, C)`` and ~10% ignore pixels."""
    structures = importlib.import_module("mmseg.structures")
    pixel_data = importlib.import_module("mmengine.structures").PixelData
    generator = torch.Generator().manual_seed(seed)
    images, samples = [], []
    for _ in range(2):
        images.append(torch.rand(3, *IMAGE, generator=generator) * 255)
        labels = torch.randint(0, NUM_CLASSES, (1, *IMAGE), generator=generator)
        labels[torch.rand(labels.shape, generator=generator) < 0.1] = 255
        sample = structures.SegDataSample(gt_sem_seg=pixel_data(data=labels))
        sample.set_metainfo({"img_shape": IMAGE, "ori_shape": IMAGE})
        samples.append(sample)
    return model.data_preprocessor({"inputs": images, "data_samples": samples}, training)


def gt_labels(data: dict[str, Any]) -> torch.Tensor:
    return torch.stack([s.gt_sem_seg.data[0] for s in data["data_samples"]])  # (B, H, W)


def open_the_gate(sar: Any, classifier: torch.nn.Conv2d) -> None:
    """Make ``classifier`` map the embedded anchors to ``2.5 * I``, so SAR's gate opens.

    With 3 classes each anchor's probability is then ``e^2.5 / (e^2.5 + 2) = 0.86``: above
    ``delta = 0.8`` (the gate opens) and below ``tau = 0.9`` (its CE weight, and so the gradient
    of the auxiliary loss, is not suppressed).
    """
    with torch.no_grad():
        embedded = sar.embedded_anchors()  # (C, D), training-mode BN as in the loss
        weight = 2.5 * torch.linalg.pinv(embedded).T  # (C, D): embedded @ weight.T = 2.5 I
        classifier.weight.copy_(weight[:, :, None, None])
        classifier.bias.zero_()


def standalone_copy(sar: Any, **options: Any) -> SemanticAnchorRegularizer:
    """A regularizer built here, directly, holding ``sar``'s state."""
    reference = SemanticAnchorRegularizer(NUM_CLASSES, CHANNELS, ignore_index=255, **options)
    reference.load_state_dict(sar.state_dict(), strict=True)
    return reference.train(sar.training)


def test_loss_adds_sar_of_the_head_features_and_keeps_mmseg_losses(mmseg: Any) -> None:
    config = tiny_config(sar={"lambda_p2a": 0.5, "tau": 0.95})
    model = build(mmseg, config).train()
    assert type(model).__name__ == "SAREncoderDecoder"
    head = model.decode_head
    open_the_gate(model.sar, head.conv_seg)
    reference = standalone_copy(model.sar, lambda_p2a=0.5, tau=0.95)
    plain = plain_copy(mmseg, model, config)
    data = batch(model, seed=1, training=True)

    torch.manual_seed(5)  # the heads' dropout
    losses = model.loss(data["inputs"], data["data_samples"])
    torch.manual_seed(5)
    expected_mmseg = plain.loss(data["inputs"], data["data_samples"])

    assert set(losses) == set(expected_mmseg) | SAR_KEYS | {"sar.min_anchor_prob"}
    for key, value in expected_mmseg.items():
        torch.testing.assert_close(losses[key], value, msg=key)
    # The reference: the pre-dropout features of FCNHead, computed by hand from the same weights.
    with torch.no_grad():
        features = plain.decode_head._forward_feature(plain.extract_feat(data["inputs"]))
    assert features.shape == (2, CHANNELS, 5, 6)
    expected = reference(features, gt_labels(data), plain.decode_head.conv_seg)
    torch.testing.assert_close(losses["loss_sar"], expected)
    assert losses["sar.gate_open"].item() == 1.0, "the gate must be open to test p2a"
    assert losses["sar.p2a"].item() > 0
    torch.testing.assert_close(losses["sar.aux"] + losses["sar.p2a"], losses["loss_sar"].detach())
    for key, value in reference.state_dict().items():  # the EMA copied the same anchors
        torch.testing.assert_close(model.sar.state_dict()[key], value, msg=key)
    assert bool(model.sar.initialized.all())


def test_backward_reaches_the_model_and_mmseg_sums_only_the_loss_keys(mmseg: Any) -> None:
    model = build(mmseg, tiny_config()).train()
    open_the_gate(model.sar, model.decode_head.conv_seg)
    data = batch(model, seed=2, training=True)
    losses = model.loss(data["inputs"], data["data_samples"])
    for key in SAR_KEYS:
        assert torch.isfinite(losses[key]).all(), key
    total, logs = model.parse_losses(losses)
    summed = [key for key in losses if "loss" in key]
    assert sorted(summed) == ["aux.loss_ce", "decode.loss_ce", "loss_sar"]
    torch.testing.assert_close(total, sum(losses[key] for key in summed))
    assert "sar.p2a" in logs and "sar.gate_open" in logs

    losses["loss_sar"].backward()  # SAR alone: its gradient must reach the features' producers
    for name, parameter in model.named_parameters():
        if name.startswith(("sar.", "decode_head.conv", "backbone.layer4")):
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
            assert torch.isfinite(parameter.grad).all(), name
    assert all(not buffer.requires_grad for buffer in model.sar.buffers())


def test_predict_and_forward_equal_mmseg_and_skip_sar(mmseg: Any) -> None:
    config = tiny_config()
    model = build(mmseg, config).train()
    model.loss(**batch(model, seed=3, training=True))  # trained state: EMA, BN statistics
    model.eval()
    plain = plain_copy(mmseg, model, config)
    sar_state = copy.deepcopy(model.sar.state_dict())
    with torch.no_grad():
        ours = model.predict(**batch(model, seed=4, training=False))
        theirs = plain.predict(**batch(plain, seed=4, training=False))
        inputs = batch(model, seed=4, training=False)["inputs"]
        assert torch.equal(model(inputs, mode="tensor"), plain(inputs, mode="tensor"))
    for mine, expected in zip(ours, theirs, strict=True):
        assert mine.pred_sem_seg.data.shape == (1, *IMAGE)
        assert torch.equal(mine.seg_logits.data, expected.seg_logits.data)
        assert torch.equal(mine.pred_sem_seg.data, expected.pred_sem_seg.data)
    for key, value in sar_state.items():
        assert torch.equal(model.sar.state_dict()[key], value), key


def test_checkpoint_keeps_the_sar_state_and_resumes_exactly(mmseg: Any, tmp_path: Path) -> None:
    checkpoint = importlib.import_module("mmengine.runner.checkpoint")
    config = tiny_config()
    model = build(mmseg, config).train()
    open_the_gate(model.sar, model.decode_head.conv_seg)
    model.loss(**batch(model, seed=5, training=True))
    buffers = dict(model.named_buffers())
    for key in ("sar.anchors", "sar.semantic_anchors", "sar.initialized"):
        assert key in model.state_dict() and key in buffers, key
    assert buffers["sar.semantic_anchors"].abs().sum() > 0 and buffers["sar.initialized"].all()
    assert any(key.startswith("sar.embedding.") for key in model.state_dict())

    path = tmp_path / "iter_1.pth"
    checkpoint.save_checkpoint({"state_dict": model.state_dict()}, str(path))
    resumed = build(mmseg, config, seed=7).train()
    assert not torch.equal(resumed.sar.anchors, model.sar.anchors)
    checkpoint.load_checkpoint(resumed, str(path), map_location="cpu", strict=True)
    for key, value in model.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key
    data = batch(model, seed=6, training=True)
    torch.manual_seed(8)
    expected = model.loss(data["inputs"], data["data_samples"])
    torch.manual_seed(8)
    actual = resumed.loss(data["inputs"], data["data_samples"])
    assert torch.equal(actual["loss_sar"], expected["loss_sar"])
    assert torch.equal(resumed.sar.semantic_anchors, model.sar.semantic_anchors)


def test_cascade_ocrnet_regularizes_the_last_heads_object_context(mmseg: Any) -> None:
    ocr = {
        "type": "OCRHead",
        "in_channels": 64,
        "in_index": 1,
        "channels": CHANNELS,
        "ocr_channels": 8,
        "dropout_ratio": 0.1,
        "num_classes": NUM_CLASSES,
        "norm_cfg": NORM,
        "align_corners": False,
    }
    # No dropout in the coarse head: mmseg runs it twice in training (its loss, then the OCR
    # head's input), and the reference below must see the same coarse logits.
    decode_heads = [fcn_head(64, 8, in_index=1, dropout_ratio=0.0), ocr]
    config = tiny_config("SARCascadeEncoderDecoder", num_stages=2, decode_head=decode_heads)
    config.pop("auxiliary_head")
    model = build(mmseg, config).train()
    head = model.decode_head[-1]
    open_the_gate(model.sar, head.conv_seg)
    reference = standalone_copy(model.sar)
    data = batch(model, seed=9, training=True)
    losses = model.loss(data["inputs"], data["data_samples"])
    assert "decode_1.loss_ce" in losses and "loss_sar" in losses
    with torch.no_grad():  # OCRHead.forward up to cls_seg, module by module
        levels = model.extract_feat(data["inputs"])
        coarse = model.decode_head[0].forward(levels)
        feats = head.bottleneck(head._transform_inputs(levels))
        context = head.spatial_gather_module(feats, coarse)
        object_context = head.object_context_block(feats, context)  # (B, 16, 5, 6)
    expected = reference(object_context, gt_labels(data), head.conv_seg)
    assert losses["sar.gate_open"].item() == 1.0
    torch.testing.assert_close(losses["loss_sar"], expected)


def test_errors_name_the_head_and_the_dimensions(mmseg: Any) -> None:
    with pytest.raises(ValueError, match=r"`sar.feat_dim`=32 .*FCNHead.conv_seg takes 16"):
        build(mmseg, tiny_config(sar={"feat_dim": 32}))
    with pytest.raises(ValueError, match=r"\['num_classes'\] come from the decode head"):
        build(mmseg, tiny_config(sar={"num_classes": 5}))
    with pytest.raises(ValueError, match=r"does not take option\(s\) \['lamda_p2a'\]"):
        build(mmseg, tiny_config(sar={"lamda_p2a": 0.1}))
    segmenter = {
        "type": "SegmenterMaskTransformerHead",
        "in_channels": 64,
        "in_index": 1,
        "channels": CHANNELS,
        "num_classes": NUM_CLASSES,
        "num_layers": 1,
        "num_heads": 2,
        "embed_dims": CHANNELS,
    }
    no_classifier = tiny_config(decode_head=segmenter)
    no_classifier.pop("auxiliary_head")
    with pytest.raises(ValueError, match=r"SegmenterMaskTransformerHead has none as `conv_seg`"):
        build(mmseg, no_classifier)


def test_a_head_that_bypasses_its_classifier_is_an_error(mmseg: Any) -> None:
    model = build(mmseg, tiny_config()).train()
    data = batch(model, seed=10, training=True)
    logits = torch.zeros(2, NUM_CLASSES, 5, 6, requires_grad=True)
    model.decode_head.forward = lambda inputs: logits  # never calls conv_seg
    with pytest.raises(RuntimeError, match=r"FCNHead.conv_seg ran 0 times in its loss\(\)"):
        model.loss(data["inputs"], data["data_samples"])


def test_the_docs_config_builds(mmseg: Any, tmp_path: Path) -> None:
    """The config of docs/models.md, next to mmseg's shipped configs, gives SAR on FCN-R50."""
    config_module = importlib.import_module("mmengine.config")
    text = DOCS.read_text()
    section = text[text.index("## SAR in mmseg 1.x configs") :]
    block = re.search(r"```python\n(.*?)```", section, flags=re.S)
    assert block is not None
    shipped = Path(importlib.import_module("mmseg").__file__).parent / ".mim" / "configs"
    if not shipped.is_dir():
        pytest.skip("this mmseg install ships no configs")
    for name in ("fcn", "_base_"):
        (tmp_path / name).symlink_to(shipped / name, target_is_directory=True)
    (tmp_path / "sar").mkdir()
    path = tmp_path / "sar" / "fcn_r50-d8_sar.py"
    path.write_text(block.group(1))
    config = config_module.Config.fromfile(str(path))
    model = build(mmseg, config.model.to_dict())
    assert type(model).__name__ == "SAREncoderDecoder"
    assert (model.sar.num_classes, model.sar.feat_dim) == (19, 512)
    for key, value in config.model.sar.items():
        assert getattr(model.sar, key) == value, key


def test_import_without_mmseg_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mmseg", None)  # `import mmseg` raises ImportError
    monkeypatch.delitem(sys.modules, PLUGIN, raising=False)
    with pytest.raises(ImportError, match=r'pip install "semantic-anchors\[ref\]"') as error:
        importlib.import_module(PLUGIN)
    assert "mim install" in str(error.value) and "mmsegmentation" in str(error.value)


def test_import_without_mmseg_models_asks_for_the_full_mmcv(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("mmseg")
    for name in ("mmseg.models", "mmseg.models.segmentors"):  # as when mmcv.ops is missing
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, PLUGIN, raising=False)
    with pytest.raises(ImportError, match=r"mmcv-lite lacks: install the full mmcv") as error:
        importlib.import_module(PLUGIN)
    assert 'mim install "mmcv>=2.0.0"' in str(error.value)
