"""Representation diagnostics: how compact and how separated the class clusters of features are.

Pure torch functions plus :class:`FeatureStatistics`, a streaming accumulator over a dataset.
All of them work from per-class first and second moments (sums, counts, sums of squares) in
float64, so one batch, many batches and many DDP processes give the same numbers.

Definitions (``x_i`` a valid sample, ``y_i`` its class, ``n_c`` the class count,
``mu_c`` the class centre, ``mu`` the mean of all valid samples):

* compactness of class c: ``(1 / n_c) * sum_{i: y_i = c} ||x_i - mu_c||^2`` (squared Euclidean,
  summed over the feature dimensions); ``mean_compactness`` averages the present classes equally.
* ``min_distance`` / ``mean_distance``: Euclidean distances ``||mu_a - mu_b||`` over pairs of
  present classes ``a < b``.
* ``fisher_ratio``: ``tr(S_B) / tr(S_W)`` with ``tr(S_B) = sum_c n_c ||mu_c - mu||^2`` and
  ``tr(S_W) = sum_c sum_{i: y_i = c} ||x_i - mu_c||^2`` (count-weighted, as in LDA); larger is
  better separated.

These are distances in feature units, not percentages. Absent classes give NaN entries and are
left out of every mean / min.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric

from semantic_anchors.functional.confusion import _check_num_classes
from semantic_anchors.metrics._moments import (
    _centers_from_moments,
    _class_moments,
    _exact_pairwise_distances,
    _summary_from_moments,
)

__all__ = [
    "FeatureStatistics",
    "class_centers",
    "cosine_similarity_matrix",
    "inter_class_separability",
    "intra_class_compactness",
    "pairwise_center_distances",
    "relationship_consistency",
]


def class_centers(
    features: Tensor,
    labels: Tensor,
    num_classes: int,
    ignore_index: int | None = 255,
    validate: bool = True,
) -> Tensor:
    """Mean feature of each class (NaN row for a class without valid samples).

    Args:
        features: ``(N, D)`` vectors or ``(B, D, h, w)`` dense features.
        labels: ``(N,)`` or ``(B, H, W)``; dense labels are resized to ``(h, w)`` as
            ``F.interpolate(labels[:, None].float(), mode="nearest")``.
        num_classes: number of classes ``C`` (>= 2).
        ignore_index: label to leave out, or None.
        validate: check label ranges and finiteness (forces a device sync).

    Shape:
        - output: ``(C, D)`` float64 (float32 on MPS).

    Raises:
        ValueError: ``num_classes`` < 2, a feature / label shape mismatch, non-float features,
            non-integer labels, labels out of range or non-finite features.

    Example:
        >>> feats = torch.tensor([[0.0, 0.0], [2.0, 0.0], [5.0, 5.0]])
        >>> class_centers(feats, torch.tensor([0, 0, 2]), num_classes=3)
        tensor([[1., 0.],
                [nan, nan],
                [5., 5.]], dtype=torch.float64)
    """
    sums, counts, _ = _class_moments(features, labels, num_classes, ignore_index, validate)
    return _centers_from_moments(sums, counts)


def intra_class_compactness(
    features: Tensor,
    labels: Tensor,
    num_classes: int,
    ignore_index: int | None = 255,
    validate: bool = True,
) -> dict[str, Tensor]:
    """Mean squared Euclidean distance of samples to their class centre (smaller = more compact).

    Args: as :func:`class_centers`.

    Returns:
        ``{"compactness": (C,) per class (NaN if absent), "mean_compactness": () over present
        classes, each counted once}``.

    Raises:
        ValueError: as :func:`class_centers`.

    Example:
        >>> feats = torch.tensor([[0.0, 0.0], [2.0, 0.0], [5.0, 5.0]])
        >>> intra_class_compactness(feats, torch.tensor([0, 0, 1]), num_classes=2)
        {'compactness': tensor([1., 0.], dtype=torch.float64), 'mean_compactness': tensor(0.5000, dtype=torch.float64)}
    """
    summary = _summary_from_moments(
        *_class_moments(features, labels, num_classes, ignore_index, validate)
    )
    return {key: summary[key] for key in ("compactness", "mean_compactness")}


def inter_class_separability(
    features: Tensor,
    labels: Tensor,
    num_classes: int,
    ignore_index: int | None = 255,
    validate: bool = True,
) -> dict[str, Tensor]:
    """Distances between class centres and the Fisher-style ratio ``tr(S_B) / tr(S_W)``.

    Args: as :func:`class_centers`.

    Returns:
        ``{"min_distance", "mean_distance", "fisher_ratio"}`` scalars over the present classes;
        NaN when fewer than two classes are present (``fisher_ratio`` is inf when every sample
        sits on its centre).

    Raises:
        ValueError: as :func:`class_centers`.

    Example:
        >>> feats = torch.tensor([[0.0, 0.0], [2.0, 0.0], [5.0, 5.0]])
        >>> result = inter_class_separability(feats, torch.tensor([0, 0, 1]), num_classes=2)
        >>> round(float(result["min_distance"]), 4), round(float(result["fisher_ratio"]), 4)
        (6.4031, 13.6667)
    """
    summary = _summary_from_moments(
        *_class_moments(features, labels, num_classes, ignore_index, validate)
    )
    return {key: summary[key] for key in ("min_distance", "mean_distance", "fisher_ratio")}


def _check_vectors(name: str, vectors: Tensor) -> None:
    if not isinstance(vectors, Tensor) or vectors.ndim != 2 or not vectors.is_floating_point():
        received = (
            f"{tuple(vectors.shape)} {vectors.dtype}"
            if isinstance(vectors, Tensor)
            else type(vectors).__name__
        )
        raise ValueError(f"{name}: expected a floating-point (C, D) tensor, received {received}")


def pairwise_center_distances(centers: Tensor) -> Tensor:
    """Euclidean distance matrix of class centres (NaN rows stay NaN).

    Shape:
        - centers: ``(C, D)``.
        - output: ``(C, C)``.

    Raises:
        ValueError: ``centers`` is not a floating-point ``(C, D)`` tensor.

    Example:
        >>> pairwise_center_distances(torch.tensor([[0.0, 0.0], [3.0, 4.0]]))
        tensor([[0., 5.],
                [5., 0.]])
    """
    _check_vectors("centers", centers)
    return _exact_pairwise_distances(centers)  # (C, C)


def cosine_similarity_matrix(vectors: Tensor, other: Tensor | None = None) -> Tensor:
    """Cosine similarity of every row of ``vectors`` with every row of ``other`` (default itself).

    Use it on anchors, semantic anchors, prototypes or class centres. Zero rows give 0, NaN rows
    give NaN.

    Shape:
        - vectors: ``(C, D)``; other: ``(K, D)``.
        - output: ``(C, K)`` (``(C, C)`` without ``other``), values in [-1, 1].

    Raises:
        ValueError: a non floating-point / non 2-D input, or different ``D``.

    Example:
        >>> cosine_similarity_matrix(torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, -2.0]]))
        tensor([[ 1.0000,  0.7071,  0.0000],
                [ 0.7071,  1.0000, -0.7071],
                [ 0.0000, -0.7071,  1.0000]])
    """
    _check_vectors("vectors", vectors)
    if other is None:
        other = vectors
    _check_vectors("other", other)
    if other.shape[1] != vectors.shape[1]:
        raise ValueError(
            f"other: expected feature dimension {vectors.shape[1]} (as vectors), "
            f"received {other.shape[1]}"
        )
    return F.normalize(vectors, dim=1) @ F.normalize(other, dim=1).T  # (C, K)


def relationship_consistency(
    centers_a: Tensor, centers_b: Tensor, metric: str = "euclidean"
) -> Tensor:
    """Pearson correlation of the class-relationship matrices of two runs (Fig. 1 of the paper).

    Compares the upper-triangle pairwise distances between class centres (or anchors /
    prototypes) of run A with those of run B, e.g. two seeds. 1 means the runs agree on which
    classes are close to which; the value is invariant to the scale of each run's features. Pairs
    involving a NaN centre in either run are left out.

    Args:
        centers_a: ``(C, D_a)`` class centres of run A.
        centers_b: ``(C, D_b)`` class centres of run B (``D_b`` may differ from ``D_a``).
        metric: ``"euclidean"`` distance or ``"cosine"`` distance (1 - cosine similarity).

    Returns:
        A scalar in [-1, 1]; NaN with fewer than two valid pairs or when either run's classes are
        equidistant (all distances within 0.01 % of each other, as for orthonormal or simplex-ETF
        anchors): their correlation would only measure rounding noise.

    Raises:
        ValueError: non ``(C, D)`` inputs, different ``C``, or an unknown ``metric``.

    Example:
        >>> a = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0]])
        >>> relationship_consistency(a, 2 * a + 1)
        tensor(1.)
    """
    _check_vectors("centers_a", centers_a)
    _check_vectors("centers_b", centers_b)
    if centers_a.shape[0] != centers_b.shape[0]:
        raise ValueError(
            f"centers_b: expected {centers_a.shape[0]} classes (as centers_a), "
            f"received {centers_b.shape[0]}"
        )
    if metric == "euclidean":
        dist_a, dist_b = pairwise_center_distances(centers_a), pairwise_center_distances(centers_b)
    elif metric == "cosine":
        dist_a = 1.0 - cosine_similarity_matrix(centers_a)  # (C, C)
        dist_b = 1.0 - cosine_similarity_matrix(centers_b)  # (C, C)
    else:
        raise ValueError(f"metric: expected 'euclidean' or 'cosine', received {metric!r}")
    dtype = torch.promote_types(dist_a.dtype, dist_b.dtype)
    upper = torch.triu_indices(*dist_a.shape, offset=1, device=dist_a.device)  # (2, P)
    x = dist_a[upper[0], upper[1]].to(dtype)  # (P,)
    y = dist_b[upper[0], upper[1]].to(dtype)  # (P,)
    keep = torch.isfinite(x) & torch.isfinite(y)  # (P,)
    x, y = x[keep], y[keep]  # (P',)
    if x.numel() < 2 or _equidistant(x) or _equidistant(y):
        return x.new_tensor(float("nan"))
    x, y = x - x.mean(), y - y.mean()
    return (x * y).sum() / (x.square().sum() * y.square().sum()).sqrt()  # ()


_EQUIDISTANT_RTOL = 1e-4


def _equidistant(distances: Tensor) -> bool:
    """True when all distances agree to ``_EQUIDISTANT_RTOL`` of their mean (an orthonormal or
    simplex-ETF set): their correlation would only measure rounding noise. Real class centres
    differ by far more than 0.01 %."""
    spread = (distances.max() - distances.min()).abs()
    return bool(spread <= _EQUIDISTANT_RTOL * distances.abs().mean())


class FeatureStatistics(Metric):
    """Streaming per-class feature moments over a dataset: centres, compactness, separability.

    States (all ``dist_reduce_fx="sum"``, so DDP sync is free): ``sums`` ``(C, D)`` and
    ``sq_sums`` ``(C, D)`` in float64, ``counts`` ``(C,)`` int64. ``compute()`` returns
    ``centers`` ``(C, D)``, ``counts`` ``(C,)``, ``compactness`` ``(C,)``, ``mean_compactness``,
    ``min_distance``, ``mean_distance`` and ``fisher_ratio`` exactly as the module functions
    define them (NaN entries for absent classes), as if all batches had been one.

    Args:
        num_classes: number of classes ``C`` (>= 2).
        feat_dim: feature dimension ``D``.
        ignore_index: label to leave out, or None.
        validate: check label ranges and finiteness in ``update`` (forces a device sync).
        **kwargs: forwarded to :class:`torchmetrics.Metric`.

    Shape:
        - features: ``(N, D)`` or ``(B, D, h, w)``.
        - labels: ``(N,)`` or ``(B, H, W)`` (nearest-resized to ``(h, w)``).

    Raises:
        ValueError: ``num_classes`` < 2, ``feat_dim`` < 1; in ``update``: a wrong feature
            dimension and everything :func:`class_centers` rejects.

    Example:
        >>> stats = FeatureStatistics(num_classes=2, feat_dim=2)
        >>> stats.update(torch.tensor([[0.0, 0.0], [2.0, 0.0]]), torch.tensor([0, 0]))
        >>> stats.update(torch.tensor([[5.0, 5.0]]), torch.tensor([1]))
        >>> stats.compute()["compactness"]
        tensor([1., 0.], dtype=torch.float64)
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    sums: Tensor
    sq_sums: Tensor
    counts: Tensor

    def __init__(
        self,
        num_classes: int,
        feat_dim: int,
        ignore_index: int | None = 255,
        validate: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _check_num_classes(num_classes)
        if isinstance(feat_dim, bool) or not isinstance(feat_dim, int) or feat_dim < 1:
            raise ValueError(f"feat_dim: expected an int >= 1, received {feat_dim!r}")
        self.num_classes, self.feat_dim = num_classes, feat_dim
        self.ignore_index, self.validate = ignore_index, validate
        zeros = torch.zeros(num_classes, feat_dim, dtype=torch.float64)  # (C, D)
        self.add_state("sums", default=zeros.clone(), dist_reduce_fx="sum")
        self.add_state("sq_sums", default=zeros.clone(), dist_reduce_fx="sum")
        self.add_state(
            "counts", default=torch.zeros(num_classes, dtype=torch.long), dist_reduce_fx="sum"
        )

    def update(self, features: Tensor, labels: Tensor) -> None:
        """Add a batch of features ``(N, D)`` / ``(B, D, h, w)`` with labels ``(N,)`` / ``(B, H, W)``.

        Raises:
            ValueError: the feature dimension is not ``feat_dim``, or as :func:`class_centers`.
        """
        has_dim = isinstance(features, Tensor) and features.ndim in (2, 4)
        if has_dim and features.shape[1] != self.feat_dim:
            raise ValueError(
                f"features: expected feature dimension {self.feat_dim} (dim 1), "
                f"received shape {tuple(features.shape)}"
            )
        if isinstance(features, Tensor):
            features = features.detach()
        sums, counts, sq_sums = _class_moments(
            features, labels, self.num_classes, self.ignore_index, self.validate
        )
        self.sums += sums.to(self.sums.dtype)
        self.sq_sums += sq_sums.to(self.sq_sums.dtype)
        self.counts += counts

    def compute(self) -> dict[str, Tensor]:
        """Centres, counts, compactness and separability of everything seen (see module doc)."""
        return _summary_from_moments(self.sums, self.counts, self.sq_sums)
