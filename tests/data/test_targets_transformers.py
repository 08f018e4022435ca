"""The instance targets are what the ``transformers`` models take: a loss comes out, finite."""

from __future__ import annotations

import pytest
import torch

from semantic_anchors.data import build_dataset
from semantic_anchors.data.targets import InstanceTargets, collate_instances

transformers = pytest.importorskip("transformers")


def batch(format: str):
    ds = build_dataset("synthlt", split="val", num_images=3, with_instances=True)
    images, targets = collate_instances([InstanceTargets(ds, format)[i] for i in range(3)])
    return ds.num_classes, images.float() / 255, targets  # (3, 3, 64, 64)


def test_mask2former_takes_the_targets():
    num_labels, images, targets = batch("mask2former")
    backbone = transformers.SwinConfig(
        embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2], window_size=4, image_size=64,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )  # fmt: skip
    config = transformers.Mask2FormerConfig(
        backbone_config=backbone, num_labels=num_labels, num_queries=8, hidden_dim=32,
        mask_feature_size=32, feature_size=32, encoder_feedforward_dim=32, dim_feedforward=32,
        encoder_layers=1, decoder_layers=2, use_pretrained_backbone=False,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.Mask2FormerForUniversalSegmentation(config)
    out = model(
        pixel_values=images,
        mask_labels=[t["mask_labels"] for t in targets],
        class_labels=[t["class_labels"] for t in targets],
    )
    assert out.loss.isfinite() and out.class_queries_logits.shape == (3, 8, num_labels + 1)


def test_detr_takes_the_targets():
    num_labels, images, targets = batch("detr")
    backbone = transformers.ResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16, 16, 32], depths=[1, 1, 1, 1], out_features=["stage4"]
    )
    config = transformers.DetrConfig(
        use_timm_backbone=False, backbone_config=backbone, use_pretrained_backbone=False,
        d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, num_queries=6,
        num_labels=num_labels,
    )  # fmt: skip
    torch.manual_seed(0)
    out = transformers.DetrForObjectDetection(config)(pixel_values=images, labels=targets)
    assert out.loss.isfinite() and out.pred_boxes.shape == (3, 6, 4)
