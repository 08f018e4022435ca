"""Fixtures for the model tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_intra_op_thread() -> Iterator[None]:
    """Runs each model test on one intra-op thread, restoring the setting afterwards.

    The tests use tiny inputs, where a second thread gains nothing; on a shared, oversubscribed
    CPU the threads of the pool wait for each other and a forward pass becomes ~50x slower.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="class")
def model(request: pytest.FixtureRequest) -> torch.nn.Module:
    """The model of a ``ModelContractTests`` subclass, built once per class."""
    return request.cls().build()


@pytest.fixture(scope="class")
def images(request: pytest.FixtureRequest) -> torch.Tensor:
    """A batch of the class's ``input_shape``."""
    return torch.randn(request.cls.input_shape, generator=torch.Generator().manual_seed(1))
