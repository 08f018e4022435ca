"""The docstring examples of every regularizer module, the registry and the catalog run."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import semantic_anchors.regularizers as regularizers

MODULES = [
    *(
        f"semantic_anchors.regularizers.{m.name}"
        for m in pkgutil.iter_modules(regularizers.__path__)
    ),
    "semantic_anchors._registry",
    "semantic_anchors.catalog",
    "semantic_anchors.functional.resize",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert result.failed == 0


def test_the_examples_exist() -> None:
    attempted = sum(
        doctest.testmod(importlib.import_module(n), optionflags=doctest.ELLIPSIS).attempted
        for n in ("semantic_anchors.regularizers.prototype_head", "semantic_anchors._registry")
    )
    assert attempted >= 5
