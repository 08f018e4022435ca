"""The verdict words follow the 95 % t-interval, checked against scipy's t distribution."""

import math

import pytest
from scipy import stats

from semantic_anchors.bench.results import summarize_values
from semantic_anchors.bench.verdict import excludes_zero, interval, interval_text, verdict


def _scipy_interval(values):
    n = len(values)
    mean = sum(values) / n
    sem = stats.sem(values)
    half = stats.t.ppf(0.975, n - 1) * sem
    return mean - half, mean + half


@pytest.mark.parametrize("values", [[1.0, 2.0, 0.5], [2.5, -0.2, 2.0, 0.5, 0.5], [-1.0, -1.5]])
def test_interval_is_the_t_interval(values):
    lo, hi = interval(summarize_values(values))
    ref = _scipy_interval(values)
    assert lo == pytest.approx(ref[0], abs=1e-3) and hi == pytest.approx(ref[1], abs=1e-3)


def test_the_words_follow_the_interval():
    ahead = summarize_values([1.0, 1.2, 0.9, 1.1, 1.0])  # all near +1: excludes 0
    assert excludes_zero(ahead)
    assert verdict(ahead) == "significantly ahead (interval excludes 0), ahead on 5 of 5 seeds"
    mixed = summarize_values([2.55, -0.24, 1.99, 0.46, 0.46])
    lo, hi = _scipy_interval(mixed["values"])
    assert lo < 0 < hi and not excludes_zero(mixed)
    assert verdict(mixed) == "ahead on 4 of 5 seeds, interval includes 0"
    behind = summarize_values([-1.06, -0.9, -1.3, -1.1, -0.8])
    assert verdict(behind) == "significantly behind (interval excludes 0), behind on 5 of 5 seeds"
    loose = summarize_values([-2.0, 0.5, -1.0])
    assert verdict(loose) == "behind on 2 of 3 seeds, interval includes 0"
    assert verdict(summarize_values([0.3])) == "1 seed (ahead): no interval"
    assert verdict(summarize_values([])) == "no paired seed"
    assert interval_text(summarize_values([0.3])) == "–"
    assert interval_text(ahead, digits=2).startswith("[+0.") and math.isfinite(ahead["ci95"])


def test_a_summary_without_ci95_gets_its_interval_from_its_values():
    full = summarize_values([2.0, 2.5, 1.5])
    old = {k: v for k, v in full.items() if k != "ci95"}  # a report from before intervals
    assert interval(old) == pytest.approx(interval(full))
    assert verdict(old) == verdict(full)
