"""Obviously-correct slow references and small inputs that several test modules check against.

Plain Python loops over pixels or samples (no vectorised code of the package), and stand-ins with
chosen outputs, so a test of the package's maths compares it with something independent.
"""

from __future__ import annotations

import math

import torch

# --- SAR: pixel-to-anchor loss ---------------------------------------------------------------


def slow_p2a(features, labels, anchors, valid):
    """Obviously-correct per-pixel loop: mean over valid pixels of mean over D of (f - a_y)^2."""
    total, count = 0.0, 0
    b, d, h, w = features.shape
    for i in range(b):
        for r in range(h):
            for c in range(w):
                if not valid[i, r, c]:
                    continue
                y = int(labels[i, r, c])
                total += (
                    sum((features[i, k, r, c].item() - anchors[y, k].item()) ** 2 for k in range(d))
                    / d
                )
                count += 1
    return total / count if count else 0.0


# --- losses: per-item negative log-likelihood ------------------------------------------------


def iter_items(logits, targets, ignore_index=255):
    """Yield ``(list of C logits, target)`` for every non-ignored pixel (dense) or sample."""
    if logits.dim() == 2:
        logits, targets = logits[:, :, None, None], targets[:, None, None]
    b, c, h, w = logits.shape
    for i in range(b):
        for r in range(h):
            for col in range(w):
                y = int(targets[i, r, col])
                if y != ignore_index:
                    yield [logits[i, k, r, col].item() for k in range(c)], y


def slow_nll(scores, y):
    """``-log softmax(scores)_y`` in plain Python."""
    top = max(scores)
    return -(scores[y] - top - math.log(sum(math.exp(s - top) for s in scores)))


def slow_mean(values):
    values = list(values)
    return sum(values) / len(values) if values else 0.0


def make_inputs(dense=True, c=4, ignore_frac=0.25, dtype=torch.float64):
    if dense:
        logits = torch.randn(2, c, 3, 4, dtype=dtype, requires_grad=True)
        targets = torch.randint(0, c, (2, 3, 4))
        targets[torch.rand(2, 3, 4) < ignore_frac] = 255
    else:
        logits = torch.randn(7, c, dtype=dtype, requires_grad=True)
        targets = torch.randint(0, c, (7,))
        targets[2] = 255
    return logits, targets


# --- regularizers: per-pixel features -------------------------------------------------------


def iter_pixels(features, labels, ignore_index=255):
    """Yield ``(feature_vector, label)`` for every non-ignored pixel (dense) or sample (vector)."""
    if features.dim() == 2:
        features, labels = features[:, :, None, None], labels[:, None, None]
    b, _, h, w = features.shape
    for i in range(b):
        for r in range(h):
            for c in range(w):
                y = int(labels[i, r, c])
                if y != ignore_index:
                    yield features[i, :, r, c], y


def slow_class_means(features, labels, num_classes):
    """Per-class mean of the valid pixels as a dict ``{class: (D,) tensor}`` (present only)."""
    sums, counts = {}, {}
    for f, y in iter_pixels(features, labels):
        sums[y] = sums.get(y, 0) + f
        counts[y] = counts.get(y, 0) + 1
    return {k: sums[k] / counts[k] for k in sums}


def make_batch(b=2, d=5, h=3, w=4, c=4, ignore_frac=0.25, dtype=torch.float32):
    features = torch.randn(b, d, h, w, dtype=dtype, requires_grad=True)
    labels = torch.randint(0, c, (b, h, w))
    labels[torch.rand(b, h, w) < ignore_frac] = 255
    return features, labels


# --- classifiers with chosen outputs ----------------------------------------------------------


class FixedLogits(torch.nn.Module):
    """A stand-in classifier returning chosen ``(C, C)`` logits; gradients still flow to its input."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits + 0.0 * x.sum()


def logits_from_probs(probs: list[list[float]]) -> torch.Tensor:
    """Logits whose row-wise softmax is exactly ``probs``."""
    return torch.tensor(probs, dtype=torch.float64).log().float()


# --- instances: boxes and visible pixels -------------------------------------------------------


def slow_instances(ids, classes, min_pixels):
    """Per-pixel loop over an instance-id map: ``[(label, pixels, (x0, y0, x1, y1))]`` of every
    id ``1 .. len(classes)`` with at least ``min_pixels`` pixels, in id order; box edges are
    pixel edges (a pixel ``(r, c)`` spans ``[c, c + 1] x [r, r + 1]``)."""
    found = {}
    height, width = len(ids), len(ids[0])
    for r in range(height):
        for c in range(width):
            k = int(ids[r][c])
            if 1 <= k <= len(classes):
                n, x0, y0, x1, y1 = found.get(k, (0, width, height, 0, 0))
                found[k] = (n + 1, min(x0, c), min(y0, r), max(x1, c + 1), max(y1, r + 1))
    return [
        (int(classes[k - 1]), found[k][0], found[k][1:])
        for k in sorted(found)
        if found[k][0] >= min_pixels
    ]
