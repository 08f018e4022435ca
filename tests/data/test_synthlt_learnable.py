"""synthlt is learnable by a tiny conv net, head before tail (slow: trains for ~a minute)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from semantic_anchors.data import build_dataset, build_transforms


def tiny_fcn(num_classes: int) -> nn.Module:
    layers, channels = [], 3
    for width, stride, dilation in ((24, 2, 1), (48, 2, 1), (48, 1, 2), (64, 1, 4)):
        layers += [
            nn.Conv2d(channels, width, 3, stride, dilation, dilation=dilation, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        ]
        channels = width
    layers += [nn.Conv2d(channels, num_classes, 1), nn.Upsample(scale_factor=4, mode="bilinear")]
    return nn.Sequential(*layers)


def class_iou(model, dataset, num_classes):
    conf = torch.zeros(num_classes, num_classes, dtype=torch.long)
    model.eval()
    with torch.no_grad():
        for images, targets in DataLoader(dataset, batch_size=100):
            pred = model(images).argmax(1)
            conf += torch.bincount(
                targets.flatten() * num_classes + pred.flatten(), minlength=num_classes**2
            ).view(num_classes, num_classes)
    return conf.diag() / (conf.sum(0) + conf.sum(1) - conf.diag()).clamp(min=1)


@pytest.mark.slow
def test_tiny_net_learns_head_better_than_tail():
    torch.manual_seed(0)
    train = build_dataset("synthlt", split="train", num_train_images=1000)
    val = build_dataset("synthlt", split="val", num_train_images=1000, num_val_images=300)
    train.transform = build_transforms(
        "segmentation",
        "train",
        crop_size=64,
        mean=train.mean,
        std=train.std,
        scale_range=(0.75, 1.5),
    )
    val.transform = build_transforms("segmentation", "val", mean=train.mean, std=train.std)
    model = tiny_fcn(train.num_classes)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    steps, done = 500, 0
    while done < steps:
        for images, targets in DataLoader(train, batch_size=16, shuffle=True, drop_last=True):
            model.train()
            loss = nn.functional.cross_entropy(model(images), targets, ignore_index=255)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            done += 1
            if done == steps:
                break
    groups = train.groups
    val_iou = class_iou(model, val, train.num_classes)
    head, tail = val_iou[groups["head"]].mean(), val_iou[groups["tail"]].mean()
    print(f"val mIoU {val_iou.mean():.3f} head {head:.3f} tail {tail:.3f}")
    assert val_iou[0] > 0.8  # background vs objects is easy
    assert head > 0.3 and head > tail + 0.1  # objects are learned, the tail lags
