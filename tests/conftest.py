"""Shared fixtures: everything is generated here, nothing is downloaded."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


class FixedLogits(torch.nn.Module):
    """A stand-in classifier returning chosen ``(C, C)`` logits; gradients still flow to its input."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits + 0.0 * x.sum()


def logits_from_probs(probs: list[list[float]]) -> torch.Tensor:
    """Logits whose row-wise softmax is exactly ``probs``."""
    return torch.tensor(probs, dtype=torch.float64).log().float()
