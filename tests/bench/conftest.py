"""Fixtures of the bench tests: one tiny real bench (fabricated folders: tests/_helpers)."""

from __future__ import annotations

import pytest

from tests._helpers.fabricate import TINY_SET


@pytest.fixture(scope="session")
def tiny_bench(tmp_path_factory):
    """A real bench of one working SAR run and one broken method, run through the runner."""
    from semantic_anchors.bench import load_suite, run_suite

    out = tmp_path_factory.mktemp("bench") / "tiny"
    suite = load_suite({
        "name": "tiny", "seeds": [0], "set": TINY_SET,
        "datasets": {"synthlt": {"recipe": "synthlt-fcn-quick"}},
        "methods": {"sar": {"set": ["regularizer.name=sar", "regularizer.delta=0.2"]},
                    "broken": {"set": ["regularizer.name=sar", "regularizer.bogus=1"]}},
    })  # fmt: skip
    lines: list[str] = []
    results = run_suite(suite, out, jobs=2, echo=lines.append)
    return suite, out, results, lines
