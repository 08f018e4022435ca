"""The examples in the data docstrings run."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "semantic_anchors.data.longtail",
    "semantic_anchors.data.io",
    "semantic_anchors.data.registry",
    "semantic_anchors.data.transforms",
    "semantic_anchors.data.datasets.synthlt",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    assert result.attempted > 0
