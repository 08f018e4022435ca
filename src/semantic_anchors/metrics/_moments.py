"""Per-class first and second feature moments and the diagnostics derived from them.

Private helpers of :mod:`semantic_anchors.metrics.representation` (see its docstring for the
definitions); kept apart so the public module stays readable.
"""

from __future__ import annotations

import torch
from torch import Tensor

from semantic_anchors.functional.confusion import _check_num_classes, _float_dtype, _is_integer
from semantic_anchors.functional.p2a import resize_labels

_CHUNK = 1 << 15  # samples converted to float64 at a time


def _exact_pairwise_distances(centers: Tensor) -> Tensor:
    """Euclidean distance matrix ``(C, C)`` of the rows of ``centers`` ``(C, D)``."""
    # The matmul shortcut loses precision for close centres; C is small, so take the exact path.
    return torch.cdist(centers, centers, compute_mode="donot_use_mm_for_euclid_dist")  # (C, C)


def _flatten_samples(
    features: Tensor, labels: Tensor, num_classes: int, ignore_index: int | None, validate: bool
) -> tuple[Tensor, Tensor]:
    """Valid ``(N, D)`` samples and ``(N,)`` labels; dense labels nearest-resized to the features."""
    for name, tensor in (("features", features), ("labels", labels)):
        if not isinstance(tensor, Tensor):
            raise ValueError(f"{name}: expected a torch.Tensor, received {type(tensor).__name__}")
    if not features.is_floating_point():
        raise ValueError(f"features: expected a floating-point tensor, received {features.dtype}")
    if not _is_integer(labels):
        raise ValueError(f"labels: expected an integer tensor, received dtype {labels.dtype}")
    if features.ndim == 2:
        if tuple(labels.shape) != (features.shape[0],):
            raise ValueError(
                f"labels: expected shape ({features.shape[0]},) for features "
                f"{tuple(features.shape)}, received {tuple(labels.shape)}"
            )
        samples = features  # (N, D)
    elif features.ndim == 4:
        batch, dim, height, width = features.shape
        if labels.ndim != 3 or labels.shape[0] != batch:
            raise ValueError(
                f"labels: expected shape ({batch}, H, W) for features {tuple(features.shape)}, "
                f"received {tuple(labels.shape)}"
            )
        labels = resize_labels(labels, (height, width))  # (B, h, w) the regularizers' rule
        samples = features.permute(0, 2, 3, 1).reshape(-1, dim)  # (B*h*w, D)
    else:
        raise ValueError(
            f"features: expected shape (N, D) or (B, D, h, w), received {tuple(features.shape)}"
        )
    labels = labels.reshape(-1).long()  # (N,)
    if ignore_index is not None:
        keep = labels != ignore_index  # (N,)
        samples, labels = samples[keep], labels[keep]  # (N', D), (N',)
    if validate:
        bad = (labels < 0) | (labels >= num_classes)
        if bool(bad.any()):
            raise ValueError(
                f"labels: expected class labels in [0, {num_classes}) or the ignore_index "
                f"{ignore_index}, received values {torch.unique(labels[bad])[:8].tolist()}"
            )
        if not bool(torch.isfinite(samples).all()):
            raise ValueError("features: expected finite values, received NaN or inf")
    return samples, labels


def _class_moments(
    features: Tensor,
    labels: Tensor,
    num_classes: int,
    ignore_index: int | None = 255,
    validate: bool = True,
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-class ``(C, D)`` sums, ``(C,)`` counts and ``(C, D)`` sums of squares in float64."""
    _check_num_classes(num_classes)
    samples, labels = _flatten_samples(features, labels, num_classes, ignore_index, validate)
    dtype = _float_dtype(samples.device)
    sums = samples.new_zeros(num_classes, samples.shape[1], dtype=dtype)  # (C, D)
    sq_sums = torch.zeros_like(sums)  # (C, D)
    # float64 copies in chunks: dense features can hold millions of pixels.
    for chunk, chunk_labels in zip(samples.split(_CHUNK), labels.split(_CHUNK), strict=True):
        chunk = chunk.to(dtype)  # (n, D)
        sums.index_add_(0, chunk_labels, chunk)
        sq_sums.index_add_(0, chunk_labels, chunk.square())
    counts = torch.bincount(labels, minlength=num_classes)  # (C,)
    return sums, counts, sq_sums


def _centers_from_moments(sums: Tensor, counts: Tensor) -> Tensor:
    return sums / counts.to(sums.dtype)[:, None]  # (C, D) NaN rows for absent classes


def _within_scatter_from_moments(sums: Tensor, counts: Tensor, sq_sums: Tensor) -> Tensor:
    """``sum_{i in c} ||x_i - mu_c||^2`` per class ``(C,)``, NaN for absent classes."""
    n = counts.to(sums.dtype)[:, None]  # (C, 1)
    return (sq_sums - sums.square() / n).sum(1).clamp_min(0.0)  # (C,) rounding can dip below 0


def _summary_from_moments(sums: Tensor, counts: Tensor, sq_sums: Tensor) -> dict[str, Tensor]:
    centers = _centers_from_moments(sums, counts)  # (C, D)
    within = _within_scatter_from_moments(sums, counts, sq_sums)  # (C,)
    compactness = within / counts.to(sums.dtype)  # (C,)
    present = counts > 0  # (C,)
    distances = _exact_pairwise_distances(centers[present])  # (P, P)
    upper = torch.triu_indices(*distances.shape, offset=1, device=distances.device)  # (2, P(P-1)/2)
    pair = distances[upper[0], upper[1]]  # (P(P-1)/2,)
    nan = sums.new_tensor(float("nan"))
    n = counts[present].to(sums.dtype)  # (P,)
    global_mean = sums.sum(0) / n.sum()  # (D,)
    between = (n * (centers[present] - global_mean).square().sum(1)).sum()  # ()
    return {
        "centers": centers,
        "counts": counts,
        "compactness": compactness,
        "mean_compactness": torch.nanmean(compactness),
        "min_distance": pair.min() if pair.numel() else nan,
        "mean_distance": pair.mean() if pair.numel() else nan,
        "fisher_ratio": between / within[present].sum() if pair.numel() else nan,
    }
