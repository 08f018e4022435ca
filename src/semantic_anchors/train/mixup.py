"""Mixup (Zhang et al., ICLR 2018) as MiSLAS' stage 1 uses it: one mixing weight per batch.

``x = lam * x + (1 - lam) * x[perm]`` with ``lam ~ Beta(alpha, alpha)`` and a random permutation of
the batch; the loss is ``lam * L(logits, y) + (1 - lam) * L(logits, y[perm])``. Both draws come
from a generator seeded by ``(seed, step, rank)``, so a resumed run mixes exactly like a straight
one (``data.mixup_alpha``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

__all__ = ["MixedTargets", "mixup_batch"]


class MixedTargets(NamedTuple):
    """The two label sets of a mixed batch and the weight of the first.

    Attributes:
        targets_a: ``(B,)`` labels of the unpermuted images.
        targets_b: ``(B,)`` labels of the permuted images (``targets_a`` when not mixed).
        lam: weight of ``targets_a`` (1.0 when not mixed).
    """

    targets_a: Tensor
    targets_b: Tensor
    lam: float

    def loss(self, criterion: Callable[[Tensor, Tensor], Tensor], logits: Tensor) -> Tensor:
        """``lam * criterion(logits, a) + (1 - lam) * criterion(logits, b)``; just
        ``criterion(logits, a)`` when ``lam == 1``."""
        first = criterion(logits, self.targets_a)
        if self.lam == 1.0:
            return first
        return self.lam * first + (1 - self.lam) * criterion(logits, self.targets_b)

    @property
    def dominant(self) -> Tensor:
        """The labels of the larger share (``a`` when ``lam >= 0.5``): what a regularizer that
        takes one label per image (SAR) is given."""
        return self.targets_a if self.lam >= 0.5 else self.targets_b


def mixup_batch(
    images: Tensor,
    targets: Tensor,
    alpha: float | None,
    *,
    seed: int,
    step: int,
    rank: int = 0,
) -> tuple[Tensor, MixedTargets]:
    """Mix a batch; ``alpha`` ``None`` or ``<= 0`` returns it unchanged (``lam = 1``).

    Args:
        images: ``(B, C, H, W)`` float images.
        targets: ``(B,)`` labels.
        alpha: the Beta distribution's parameter (authors: 1.0).
        seed, step, rank: seed the draws (experiment seed, optimizer step, global rank).

    Returns:
        The mixed images and their :class:`MixedTargets`.

    Example:
        >>> x, y = torch.randn(4, 1, 2, 2), torch.arange(4)  # label i = index i here
        >>> mixed, t = mixup_batch(x, y, 1.0, seed=0, step=0)
        >>> torch.allclose(mixed, t.lam * x + (1 - t.lam) * x[t.targets_b])
        True
    """
    if not alpha or alpha <= 0:
        return images, MixedTargets(targets, targets, 1.0)
    rng = np.random.default_rng([int(seed), int(step), int(rank)])
    lam = float(rng.beta(alpha, alpha))
    perm = torch.from_numpy(rng.permutation(images.shape[0])).to(images.device)  # (B,)
    mixed = lam * images + (1 - lam) * images[perm]  # (B, C, H, W)
    return mixed, MixedTargets(targets, targets[perm], lam)
