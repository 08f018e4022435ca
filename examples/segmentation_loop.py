"""SAR in a plain PyTorch segmentation loop: no framework, no files, under a minute on a CPU.

The data are tiny synthetic scenes: squares of 4 classes whose class is given by a texture
(stripe orientation), drawn with long-tailed frequencies on a noisy background (class 0). The
model is a small fully convolutional net that returns its pre-classifier features; SAR is the
three marked lines.

    python examples/segmentation_loop.py --steps 100
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn

from semantic_anchors import SemanticAnchorRegularizer

NUM_CLASSES = 5  # background + 4 textured object classes
FREQUENCIES = torch.tensor([0.55, 0.25, 0.12, 0.08])  # long-tailed object classes 1..4


def make_scenes(n: int, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` scenes ``(n, 3, size, size)`` with labels ``(n, size, size)``."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    textures = [
        ((yy // 2) % 2).float(),  # horizontal stripes
        ((xx // 2) % 2).float(),  # vertical stripes
        (((yy + xx) // 2) % 2).float(),  # diagonal stripes
        ((yy // 2 + xx // 2) % 2).float(),  # checkerboard
    ]
    images = 0.3 * torch.randn(n, 3, size, size, generator=g)
    labels = torch.zeros(n, size, size, dtype=torch.long)
    for i in range(n):
        for _ in range(3):
            cls = int(torch.multinomial(FREQUENCIES, 1, generator=g)) + 1
            s = int(torch.randint(8, 14, (1,), generator=g))
            y0, x0 = (int(v) for v in torch.randint(0, size - s, (2,), generator=g))
            colour = torch.rand(3, 1, 1, generator=g) + 0.5  # colour is a nuisance
            patch = textures[cls - 1][y0 : y0 + s, x0 : x0 + s]
            images[i, :, y0 : y0 + s, x0 : x0 + s] += colour * (2 * patch - 1)
            labels[i, y0 : y0 + s, x0 : x0 + s] = cls
    return images, labels


class TinyFCN(nn.Module):
    def __init__(self, num_classes: int, width: int = 32) -> None:
        super().__init__()

        def block(i, o, s):
            return nn.Sequential(nn.Conv2d(i, o, 3, s, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU())

        self.body = nn.Sequential(
            block(3, width, 1), block(width, width, 2), block(width, width, 1)
        )
        self.dropout = nn.Dropout2d(0.1)
        self.classifier = nn.Conv2d(width, num_classes, 1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)  # (B, D, H/2, W/2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.forward_features(x)
        logits = self.classifier(self.dropout(features))  # (B, C, H/2, W/2)
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear"), features


def miou(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> tuple[float, list[float]]:
    ious = []
    for c in range(num_classes):
        inter = ((pred == c) & (target == c)).sum().item()
        union = ((pred == c) | (target == c)).sum().item()
        ious.append(100.0 * inter / union if union else float("nan"))
    present = [v for v in ious if v == v]
    return sum(present) / len(present), ious


def train(use_sar: bool, steps: int, seed: int) -> tuple[float, list[float], dict]:
    torch.manual_seed(seed)
    train_x, train_y = make_scenes(256, seed=1)
    val_x, val_y = make_scenes(128, seed=2)
    model = TinyFCN(NUM_CLASSES)
    params = list(model.parameters())
    sar = None
    if use_sar:  # (1) build it next to the model and optimise its embedding with the model
        sar = SemanticAnchorRegularizer(num_classes=NUM_CLASSES, feat_dim=32)
        params += list(sar.parameters())
    optimizer = torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=5e-4)
    for step in range(steps):
        idx = torch.randint(0, len(train_x), (16,))
        logits, features = model(train_x[idx])
        loss = F.cross_entropy(logits, train_y[idx], ignore_index=255)
        if sar is not None:  # (2) add it to the loss with the model's own classifier
            loss = loss + sar(features, train_y[idx], model.classifier)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        for group in optimizer.param_groups:  # poly schedule
            group["lr"] = 0.05 * (1 - (step + 1) / steps) ** 0.9
    model.eval()
    with torch.no_grad():
        pred = model(val_x)[0].argmax(1)
    stats = sar.last_stats if sar is not None else {}  # (3) gate and loss terms, for logging
    return (*miou(pred, val_y, NUM_CLASSES), stats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for name, use_sar in (("CE", False), ("CE + SAR", True)):
        m, ious, stats = train(use_sar, args.steps, args.seed)
        per_class = " ".join(f"{v:5.1f}" for v in ious)
        print(f"{name:9s} mIoU {m:5.1f} | per class (0 = background) {per_class}")
        if stats:
            print(f"          last SAR stats: {stats}")


if __name__ == "__main__":
    main()
