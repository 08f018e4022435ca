"""Long-tail tools: the exponential class profile, head / body / tail groups and a seeded sub-sampler.

These are pure functions shared by every dataset so that the training code, the metrics and the
reports agree on what "head", "body" and "tail" mean.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["head_body_tail", "longtail_counts", "longtail_subsample", "split_total"]


def longtail_counts(n_max: int, num_classes: int, imbalance_factor: float) -> list[int]:
    """Per-class sample counts of the exponential (CIFAR-LT style) long-tail profile.

    ``n_i = int(n_max * imbalance_factor ** (-i / (num_classes - 1)))``: class 0 keeps ``n_max``
    samples and the last class ``n_max / imbalance_factor`` (truncated).

    Args:
        n_max: Number of samples of the most frequent class (class 0), ``>= 1``.
        num_classes: Number of classes ``C``, ``>= 1``.
        imbalance_factor: Ratio between the first and the last class, ``>= 1`` (1 = balanced).

    Returns:
        ``C`` non-increasing counts.

    Raises:
        ValueError: If an argument is out of range.

    Example:
        >>> sum(longtail_counts(500, 100, 100))  # CIFAR-100-LT, IF = 100
        10847
        >>> longtail_counts(6000, 10, 100)[:3]
        [6000, 3596, 2156]
    """
    if isinstance(n_max, bool) or not isinstance(n_max, (int, np.integer)) or n_max < 1:
        raise ValueError(f"`n_max` must be an int >= 1, got {n_max!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise ValueError(f"`num_classes` must be an int >= 1, got {num_classes!r}")
    if num_classes < 1:
        raise ValueError(f"`num_classes` must be an int >= 1, got {num_classes!r}")
    if not np.isfinite(imbalance_factor) or imbalance_factor < 1:
        raise ValueError(
            f"`imbalance_factor` must be a finite number >= 1, got {imbalance_factor!r}"
        )
    if num_classes == 1:
        return [int(n_max)]
    return [int(n_max * imbalance_factor ** (-i / (num_classes - 1))) for i in range(num_classes)]


def split_total(total: int, weights: Sequence[float]) -> list[int]:
    """Split ``total`` items into integer counts proportional to ``weights`` (largest remainder).

    Args:
        total: Number of items to distribute, ``>= 0``.
        weights: Non-negative weights, not all zero.

    Returns:
        Integer counts that sum exactly to ``total``; ties in the remainders go to lower indices.

    Raises:
        ValueError: If ``total`` is negative or the weights are negative / all zero.

    Example:
        >>> split_total(10, [1, 1, 1])
        [4, 3, 3]
    """
    w = np.asarray(weights, dtype=np.float64)  # (C,)
    if total < 0:
        raise ValueError(f"`total` must be >= 0, got {total}")
    if w.ndim != 1 or w.size == 0 or (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
        raise ValueError(
            f"`weights` must be non-negative, finite and not all zero, got {list(weights)}"
        )
    exact = total * w / w.sum()  # (C,)
    counts = np.floor(exact).astype(np.int64)  # (C,)
    remainder = total - int(counts.sum())
    # stable sort on the negated fractional parts: larger remainders first, lower index on ties
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[:remainder]] += 1
    return counts.tolist()


def head_body_tail(frequencies: Sequence[int] | np.ndarray) -> dict[str, list[int]]:
    """Head / body / tail class groups from per-class training frequencies.

    Classes are ranked by frequency, most frequent first, ties broken by the lower class index;
    with ``k = round(C / 3)`` the head is the top ``k``, the tail the bottom ``k`` and the body the
    rest.

    Args:
        frequencies: Per-class training counts (pixels or images), length ``C >= 1``.

    Returns:
        ``{"head": [...], "body": [...], "tail": [...]}``, each a sorted list of class indices.

    Raises:
        ValueError: If ``frequencies`` is empty, not 1-D, or holds negative / non-finite values.

    Example:
        >>> head_body_tail([5, 50, 1, 20, 20, 3])
        {'head': [1, 3], 'body': [0, 4], 'tail': [2, 5]}
    """
    freq = np.asarray(frequencies, dtype=np.float64)  # (C,)
    if freq.ndim != 1 or freq.size == 0:
        raise ValueError(
            f"`frequencies` must be a non-empty 1-D sequence, got shape {tuple(freq.shape)}"
        )
    if not np.isfinite(freq).all() or (freq < 0).any():
        raise ValueError(f"`frequencies` must be finite and >= 0, got {freq.tolist()}")
    num_classes = freq.size
    k = round(num_classes / 3)
    # lexsort sorts by the last key first: descending frequency, then ascending class index
    ranked = np.lexsort((np.arange(num_classes), -freq)).tolist()
    head = ranked[:k]
    tail = ranked[num_classes - k :] if k > 0 else []
    body = ranked[k : num_classes - k]
    return {"head": sorted(head), "body": sorted(body), "tail": sorted(tail)}


def longtail_subsample(
    targets: Sequence[int] | np.ndarray, counts: Sequence[int], seed: int = 0
) -> np.ndarray:
    """Seeded per-class sub-sampling: keep ``counts[c]`` random samples of every class ``c``.

    Args:
        targets: Class index of every sample, length ``N``.
        counts: Number of samples to keep per class, length ``C``; class ``c`` must have at least
            ``counts[c]`` samples.
        seed: Seed of the NumPy generator; the same inputs and seed give the same indices.

    Returns:
        Sorted int64 indices into ``targets``, ``sum(counts)`` of them.

    Shape:
        - targets: ``(N,)``
        - output: ``(sum(counts),)``

    Raises:
        ValueError: If a count is negative or exceeds the samples available for its class, or a
            target lies outside ``[0, C)``.

    Example:
        >>> longtail_subsample([0, 0, 0, 1, 1, 1], [2, 1], seed=0).size
        3
    """
    labels = np.asarray(targets, dtype=np.int64)  # (N,)
    wanted = np.asarray(counts, dtype=np.int64)  # (C,)
    if labels.ndim != 1 or wanted.ndim != 1:
        raise ValueError("`targets` and `counts` must be 1-D")
    if labels.size and (labels.min() < 0 or labels.max() >= wanted.size):
        bad = np.unique(labels[(labels < 0) | (labels >= wanted.size)])[:10].tolist()
        raise ValueError(f"`targets` must lie in [0, {wanted.size}), got values {bad}")
    available = np.bincount(labels, minlength=wanted.size)  # (C,)
    if (wanted < 0).any() or (wanted > available).any():
        bad = [c for c in range(wanted.size) if not 0 <= wanted[c] <= available[c]]
        raise ValueError(
            "`counts` must be between 0 and the samples available per class; classes "
            f"{bad[:10]} ask for {wanted[bad[:10]].tolist()} but have {available[bad[:10]].tolist()}"
        )
    rng = np.random.default_rng(seed)
    keep = [rng.permutation(np.flatnonzero(labels == c))[: wanted[c]] for c in range(wanted.size)]
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)
