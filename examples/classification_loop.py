"""SAR on a classifier you do not own: features captured by a hook, vector form, long-tailed data.

The model below stands for any library's classifier with a final ``fc`` layer: we never edit
its ``forward``. :class:`semantic_anchors.FeatureCapture` records the input of ``fc`` and SAR uses
it (``dense=False`` is the classification form). The data are Gaussian clusters in 64-D with a
long-tailed training set (imbalance factor 50) and a balanced test set. Runs in seconds on a CPU.

    python examples/classification_loop.py
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn

from semantic_anchors import FeatureCapture, SemanticAnchorRegularizer

NUM_CLASSES, IN_DIM, FEAT_DIM = 10, 64, 32


def make_data(seed: int, imbalance: float = 50.0):
    g = torch.Generator().manual_seed(seed)
    means = 1.2 * torch.randn(NUM_CLASSES, IN_DIM, generator=g)
    counts = [int(500 * imbalance ** (-i / (NUM_CLASSES - 1))) for i in range(NUM_CLASSES)]

    def sample(per_class):
        ys = torch.cat([torch.full((n,), c) for c, n in enumerate(per_class)])
        xs = means[ys] + 2.0 * torch.randn(len(ys), IN_DIM, generator=g)
        return xs, ys

    return sample(counts), sample([200] * NUM_CLASSES), counts


class SomeoneElsesNet(nn.Module):
    """A stand-in for a third-party model: features, dropout, then ``fc``."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(IN_DIM, 128), nn.BatchNorm1d(128), nn.ReLU(),
            nn.Linear(128, FEAT_DIM), nn.BatchNorm1d(FEAT_DIM), nn.ReLU(),
        )  # fmt: skip
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(FEAT_DIM, NUM_CLASSES)

    def forward(self, x):
        return self.fc(self.drop(self.body(x)))


def train(use_sar: bool, steps: int, seed: int):
    torch.manual_seed(seed)
    (train_x, train_y), (test_x, test_y), _ = make_data(seed=1)
    model = SomeoneElsesNet()
    capture = FeatureCapture(model)  # hooks the dropout's input: pre-dropout features of `fc`
    sar = SemanticAnchorRegularizer(NUM_CLASSES, FEAT_DIM, dense=False) if use_sar else None
    params = list(model.parameters()) + (list(sar.parameters()) if sar else [])
    optimizer = torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=5e-4)
    for _ in range(steps):
        idx = torch.randint(0, len(train_x), (128,))
        loss = F.cross_entropy(model(train_x[idx]), train_y[idx])
        if sar is not None:
            loss = loss + sar(capture.features, train_y[idx], capture.classifier)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        pred = model(test_x).argmax(1)
    per_class = [100.0 * (pred[test_y == c] == c).float().mean().item() for c in range(NUM_CLASSES)]
    return per_class, (sar.last_stats if sar else {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    _, _, counts = make_data(seed=1)
    print(f"training images per class: {counts}")
    for name, use_sar in (("CE", False), ("CE + SAR", True)):
        acc, stats = train(use_sar, args.steps, args.seed)
        k = round(NUM_CLASSES / 3)
        tail = sum(acc[-k:]) / k
        print(f"{name:9s} top-1 {sum(acc) / len(acc):5.1f} | tail ({k} rarest) {tail:5.1f}")
        if stats:
            print(f"          last SAR stats: {stats}")


if __name__ == "__main__":
    main()
