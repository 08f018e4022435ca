"""Long-tail profile, head / body / tail groups and the seeded sub-sampler."""

from __future__ import annotations

import numpy as np
import pytest

from semantic_anchors.data import head_body_tail, longtail_counts, longtail_subsample
from semantic_anchors.data.longtail import split_total


def test_cifar100_lt_total_is_10847():
    counts = longtail_counts(500, 100, 100)
    assert sum(counts) == 10847
    assert counts[0] == 500 and counts[-1] == 5
    assert counts == sorted(counts, reverse=True)


@pytest.mark.parametrize(("imbalance", "total"), [(50, 12608), (10, 19573)])
def test_cifar100_lt_other_factors(imbalance, total):
    assert sum(longtail_counts(500, 100, imbalance)) == total


def test_fashion_lt_counts():
    # n_i = int(6000 * 100 ** (-i / 9)), worked out by hand
    assert longtail_counts(6000, 10, 100) == [6000, 3596, 2156, 1292, 774, 464, 278, 166, 100, 60]


def test_balanced_and_single_class():
    assert longtail_counts(7, 4, 1) == [7, 7, 7, 7]
    assert longtail_counts(7, 1, 100) == [7]


@pytest.mark.parametrize(
    ("args", "name"),
    [((0, 10, 10), "n_max"), ((10, 0, 10), "num_classes"), ((10, 10, 0.5), "imbalance_factor")],
)
def test_longtail_counts_bad_input(args, name):
    with pytest.raises(ValueError, match=name):
        longtail_counts(*args)


def test_split_total_sums_exactly():
    assert split_total(10, [1, 1, 1]) == [4, 3, 3]
    counts = split_total(1000, 50.0 ** (-np.arange(12) / 11))
    assert sum(counts) == 1000 and counts == sorted(counts, reverse=True)
    with pytest.raises(ValueError, match="weights"):
        split_total(3, [0, 0])


@pytest.mark.parametrize(
    ("frequencies", "expected"),
    [
        # C = 6, k = 2; ranking 1 (50), 3 (20), 4 (20, tie -> lower index first), 0, 5, 2
        ([5, 50, 1, 20, 20, 3], {"head": [1, 3], "body": [0, 4], "tail": [2, 5]}),
        # C = 3, k = 1
        ([10, 30, 20], {"head": [1], "body": [2], "tail": [0]}),
        # C = 4, k = round(1.33) = 1; all tied -> index order
        ([7, 7, 7, 7], {"head": [0], "body": [1, 2], "tail": [3]}),
        # C = 5, k = round(1.67) = 2, body keeps one class
        ([0, 4, 3, 2, 1], {"head": [1, 2], "body": [3], "tail": [0, 4]}),
        # C = 2, k = 1: no body
        ([1, 2], {"head": [1], "body": [], "tail": [0]}),
        # C = 1, k = 0: everything is body
        ([3], {"head": [], "body": [0], "tail": []}),
    ],
)
def test_head_body_tail_hand_worked(frequencies, expected):
    assert head_body_tail(frequencies) == expected


def test_head_body_tail_cityscapes_size_partition():
    groups = head_body_tail(np.arange(19)[::-1] * 10)
    assert [len(groups[g]) for g in ("head", "body", "tail")] == [6, 7, 6]
    assert groups["head"] == list(range(6)) and groups["tail"] == list(range(13, 19))


@pytest.mark.parametrize("bad", [[], [1, -1], [[1, 2]], [1, float("nan")]])
def test_head_body_tail_bad_input(bad):
    with pytest.raises(ValueError, match="frequencies"):
        head_body_tail(bad)


def test_subsample_counts_and_determinism():
    targets = np.repeat(np.arange(4), 50)
    np.random.default_rng(0).shuffle(targets)
    counts = [50, 20, 5, 0]
    idx = longtail_subsample(targets, counts, seed=3)
    assert np.bincount(targets[idx], minlength=4).tolist() == counts
    assert np.array_equal(idx, np.sort(idx)) and len(set(idx.tolist())) == idx.size
    assert np.array_equal(idx, longtail_subsample(targets, counts, seed=3))
    assert not np.array_equal(idx, longtail_subsample(targets, counts, seed=4))


def test_subsample_bad_input():
    with pytest.raises(ValueError, match="counts"):
        longtail_subsample([0, 0, 1], [1, 2])
    with pytest.raises(ValueError, match="targets"):
        longtail_subsample([0, 5], [1, 1])
