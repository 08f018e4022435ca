"""The docstring examples of the metrics modules run and print what they say."""

import doctest
import importlib

import pytest

MODULES = [
    "semantic_anchors.functional.confusion",
    "semantic_anchors.metrics.segmentation",
    "semantic_anchors.metrics.classification",
    "semantic_anchors.metrics.detection",
    "semantic_anchors.metrics.representation",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0
