"""Fixtures of the data tests: each writes a tiny dataset in its standard layout under tmp_path."""

from __future__ import annotations

import pytest

from tests._helpers import writers


@pytest.fixture
def fashion_root(tmp_path):
    return writers.write_fashion(tmp_path / "fashion")


@pytest.fixture
def cifar_root(tmp_path):
    writers.write_cifar100(tmp_path, train_per_class=3, test_per_class=2)
    return tmp_path
