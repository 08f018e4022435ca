"""Tiny ``transformers`` query-based models (random init, CPU-sized) and their targets."""

from __future__ import annotations

import torch

NUM_LABELS = 6
NUM_QUERIES = 8
HIDDEN = 32


def tiny_mask2former(seed: int = 0, *, num_labels: int = NUM_LABELS):
    """A Mask2Former with a one-block-per-stage Swin (64 x 64 images), ``NUM_QUERIES`` queries,
    three decoder layers; dropout 0, so a forward pass draws only the matcher's points."""
    from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation, SwinConfig

    backbone = SwinConfig(
        image_size=64, embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2], window_size=4,
        drop_path_rate=0.0, out_features=["stage1", "stage2", "stage3", "stage4"],
    )  # fmt: skip
    config = Mask2FormerConfig(
        backbone_config=backbone, use_pretrained_backbone=False, num_labels=num_labels,
        num_queries=NUM_QUERIES, hidden_dim=HIDDEN, mask_feature_size=HIDDEN, feature_size=HIDDEN,
        encoder_feedforward_dim=64, dim_feedforward=64, decoder_layers=3, encoder_layers=1,
        num_attention_heads=2, train_num_points=64,
    )  # fmt: skip
    torch.manual_seed(seed)
    return Mask2FormerForUniversalSegmentation(config)


def stripe_targets(batch: int = 2, size: int = 64, *, empty_last: bool = True):
    """Images and per-image stripe instances: image ``b`` has ``3 - b`` horizontal stripes of
    classes ``(b, b + 2, b + 4)`` (mod ``NUM_LABELS``); with ``empty_last`` the last image has
    no instance at all."""
    g = torch.Generator().manual_seed(1)
    images = torch.randn(batch, 3, size, size, generator=g)
    masks, classes = [], []
    for b in range(batch):
        n = 0 if (empty_last and b == batch - 1) else max(1, 3 - b)
        m = torch.zeros(n, size, size)
        for k in range(n):
            m[k, k * size // n : (k + 1) * size // n] = 1.0
        masks.append(m)
        classes.append(torch.tensor([(b + 2 * k) % NUM_LABELS for k in range(n)], dtype=torch.long))
    return images, masks, classes
