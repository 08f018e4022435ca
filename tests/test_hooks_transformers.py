"""``FeatureCapture`` on real Hugging Face ``transformers`` models, built directly (no registry).

Each model is trained a few steps with SAR attached by ``FeatureCapture``; the captured features
are then checked against the model's own pre-classifier tensor, recorded by a forward hook on the
module that produces it (SegFormer: ``decode_head.activation``, UperNet:
``decode_head.fpn_bottleneck``, ViT: ``vit.layernorm``, ``[CLS]`` token), and
``classifier(features)`` against the model's logits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import nn

transformers = pytest.importorskip("transformers")

from semantic_anchors.hooks import FeatureCapture  # noqa: E402
from semantic_anchors.regularizers import SemanticAnchorRegularizer  # noqa: E402

NUM_CLASSES = 3


@pytest.fixture(autouse=True)
def _one_intra_op_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def segformer() -> nn.Module:
    config = transformers.SegformerConfig(
        num_labels=NUM_CLASSES,
        hidden_sizes=[8, 16, 24, 32],
        depths=[1, 1, 1, 1],
        num_attention_heads=[1, 1, 2, 2],
        decoder_hidden_size=16,
        drop_path_rate=0.0,
    )
    return transformers.SegformerForSemanticSegmentation(config)


def upernet() -> nn.Module:
    backbone = transformers.SwinConfig(
        embed_dim=8,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 2, 2],
        window_size=2,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    config = transformers.UperNetConfig(
        backbone_config=backbone,
        num_labels=NUM_CLASSES,
        hidden_size=16,
        auxiliary_channels=8,
        pool_scales=[1, 2],
        use_auxiliary_head=True,
    )
    return transformers.UperNetForSemanticSegmentation(config)


def vit() -> nn.Module:
    config = transformers.ViTConfig(
        num_labels=NUM_CLASSES,
        image_size=32,
        patch_size=8,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
    )
    return transformers.ViTForImageClassification(config)


# name: (builder, feature producer path, how to read its output, feat_dim, dense, encoder param)
CASES: dict[str, tuple[Callable[[], nn.Module], str, Callable, int, bool, str]] = {
    "segformer": (
        segformer,
        "decode_head.activation",
        lambda out: out,
        16,
        True,
        "segformer.stages.0.patch_embeddings.proj.weight",
    ),
    "upernet_swin": (
        upernet,
        "decode_head.fpn_bottleneck",
        lambda out: out,
        16,
        True,
        "backbone.swin.embeddings.patch_embeddings.projection.weight",
    ),
    "vit": (
        vit,
        "vit.layernorm",
        lambda out: out[:, 0],
        16,
        False,
        "vit.embeddings.patch_embeddings.projection.weight",
    ),
}


def _logits(model: nn.Module, x: torch.Tensor, dense: bool) -> torch.Tensor:
    logits = model(pixel_values=x).logits
    if dense and logits.shape[-2:] != x.shape[-2:]:  # SegFormer: 1/4 resolution
        logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return logits


@pytest.mark.parametrize("name", list(CASES))
def test_feature_capture_trains_sar_on_a_transformers_model(name: str) -> None:
    build, producer_path, read, feat_dim, dense, encoder_key = CASES[name]
    torch.manual_seed(0)
    model = build().train()
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 32, 32, generator=generator)
    shape = (2, 32, 32) if dense else (2,)
    labels = torch.randint(0, NUM_CLASSES, shape, generator=generator)

    capture = FeatureCapture(model)  # the one-line attach
    expected_classifier = model.decode_head.classifier if dense else model.classifier
    assert capture.classifier is expected_classifier
    sar = SemanticAnchorRegularizer(NUM_CLASSES, feat_dim, dense=dense)
    optimizer = torch.optim.AdamW([*model.parameters(), *sar.parameters()], lr=3e-3)
    encoder = dict(model.named_parameters())[encoder_key]

    losses = []
    for step in range(6):
        logits = _logits(model, x, dense)
        features = capture.features
        assert features.shape == ((2, feat_dim, 8, 8) if dense else (2, feat_dim))
        loss = F.cross_entropy(logits, labels) + sar(features, labels, capture.classifier)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if step == 0:
            assert encoder.grad is not None and encoder.grad.abs().sum() > 0
            assert sar.embedding.linear[0].weight.grad.abs().sum() > 0
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses

    # After training: the captured tensor is the model's own pre-classifier tensor.
    model.eval()
    produced = []
    producer = model.get_submodule(producer_path)
    handle = producer.register_forward_hook(lambda m, a, out: produced.append(read(out)))
    with torch.no_grad():
        logits = model(pixel_values=x).logits
        anchors = torch.randn(NUM_CLASSES, feat_dim, *((1, 1) if dense else ()))
        capture.classifier(anchors)  # outside the model's forward: not recorded
    handle.remove()
    assert len(produced) == 1
    torch.testing.assert_close(capture.features, produced[0], rtol=0, atol=0)
    with torch.no_grad():
        head_logits = capture.classifier(capture.features)
    if name == "upernet_swin":  # UperNet upsamples its logits to the input itself
        head_logits = F.interpolate(
            head_logits, size=x.shape[-2:], mode="bilinear", align_corners=False
        )
    torch.testing.assert_close(head_logits, logits, atol=1e-6, rtol=0)
    capture.remove()


@pytest.mark.parametrize("name", list(CASES))
def test_sar_pull_reaches_the_encoder_through_the_capture(name: str) -> None:
    """Once SAR's gate opens, its loss alone (L_aux touches only the classifier and the anchor
    embedding, so this is L_p2a) sends a gradient through ``capture.features`` to the encoder.
    A low ``delta`` opens the gate within a few steps on these tiny models."""
    build, _, _, feat_dim, dense, encoder_key = CASES[name]
    torch.manual_seed(0)
    model = build().train()
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 32, 32, generator=generator)
    labels = torch.randint(0, NUM_CLASSES, (2, 32, 32) if dense else (2,), generator=generator)
    capture = FeatureCapture(model)
    sar = SemanticAnchorRegularizer(NUM_CLASSES, feat_dim, dense=dense, delta=0.35)
    optimizer = torch.optim.AdamW([*model.parameters(), *sar.parameters()], lr=3e-3)
    for _ in range(30):
        loss = F.cross_entropy(_logits(model, x, dense), labels)
        loss = loss + sar(capture.features, labels, capture.classifier)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if sar.last_stats["gate_open"]:
            break
    assert sar.last_stats["gate_open"], sar.last_stats
    model(pixel_values=x)
    optimizer.zero_grad(set_to_none=True)
    sar(capture.features, labels, capture.classifier).backward()
    assert sar.last_stats["gate_open"] and sar.last_stats["loss_p2a"] > 0
    encoder = dict(model.named_parameters())[encoder_key]
    assert encoder.grad is not None and encoder.grad.abs().sum() > 0


def test_segformer_capture_reads_the_dropout_input() -> None:
    """SegFormer has dropout before its classifier: the capture hooks the dropout, so in
    training mode the features are the pre-dropout ones (the classifier input is dropped)."""
    torch.manual_seed(0)
    model = segformer().train()
    capture = FeatureCapture(model)
    assert capture.hooked_module is model.decode_head.dropout
    model.decode_head.dropout.p = 0.5
    seen = []
    handle = model.decode_head.classifier.register_forward_pre_hook(
        lambda m, args: seen.append(args[0])
    )
    model(pixel_values=torch.randn(2, 3, 32, 32))
    handle.remove()
    assert (capture.features > 0).float().mean() > 0.3  # post-ReLU, not half zeroed
    assert not torch.equal(capture.features, seen[0])
    torch.testing.assert_close(seen[0][seen[0] != 0], 2 * capture.features[seen[0] != 0])
