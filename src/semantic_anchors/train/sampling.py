"""Batch samplers whose order is a pure function of ``(seed, step)``, so a resumed run is exact.

* :class:`StepBatchSampler`: endless training batches, a fresh permutation of the dataset per
  pass, each rank its own slice of every global batch (the default stream).
* :class:`ShardSampler`: evaluation indices split over the ranks without padding.
* :class:`ClassBalancedBatchSampler` (``data.sampler: class-balanced``): every class drawn
  equally often.

The class-balanced stream is as the class-aware sampler of MiSLAS' code (from Shen et al.'s relay
backpropagation): it visits the classes in a random order, pass after pass (a fresh order each
pass), and takes ``per_class`` consecutive items of the visited class from that class's own
random cycle (a fresh permutation of its items each time they are used up). Every class is
therefore drawn equally often whatever its size. Unlike the authors' stateful iterators, the item
at stream position ``p`` is computed from ``(seed, p)`` alone, so a resumed run sees the same
batches as a straight one (as :class:`StepBatchSampler`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

__all__ = ["ClassBalancedBatchSampler", "ShardSampler", "StepBatchSampler"]

PER_CLASS = 4  # the authors' ClassAwareSampler(num_samples_cls=4)


class StepBatchSampler(Sampler[list[tuple[int, int]]]):
    """Endless training batches; batch ``k`` of rank ``r`` depends only on ``(seed, k, r)``.

    The stream of positions ``0, 1, 2, ...`` walks through a fresh permutation of the dataset per
    pass; each rank takes its own contiguous slice of every global batch. Items are
    ``(dataset index, sample seed)``.

    Args:
        num_items: dataset length.
        batch_size: per-rank batch size.
        seed: experiment seed.
        start_step: a callable returning the step to start from (read when iteration starts,
            i.e. after a checkpoint was restored).
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        start_step: Callable[[], int] = lambda: 0,
    ) -> None:
        if num_items <= 0:
            raise ValueError(f"the training dataset is empty (num_items={num_items})")
        self.num_items, self.batch_size, self.seed = num_items, batch_size, seed
        self.rank, self.world_size, self.start_step = rank, world_size, start_step
        self._perm_cache: dict[int, torch.Tensor] = {}

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perm_cache:
            self._perm_cache = {epoch: torch.randperm(
                self.num_items, generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            )}  # fmt: skip
        return self._perm_cache[epoch]

    def batch(self, step: int) -> list[tuple[int, int]]:
        """The ``(index, sample_seed)`` pairs of training step ``step`` on this rank."""
        first = (step * self.world_size + self.rank) * self.batch_size
        out = []
        for position in range(first, first + self.batch_size):
            epoch, offset = divmod(position, self.num_items)
            sample_seed = (self.seed * 1_000_003 + position) % 2**31
            out.append((int(self._permutation(epoch)[offset]), sample_seed))
        return out

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = int(self.start_step())
        while True:
            yield self.batch(step)
            step += 1


class ShardSampler(Sampler[int]):
    """Evaluation indices ``rank, rank + world, ...``: no padding, so no sample counts twice."""

    def __init__(self, num_items: int, rank: int = 0, world_size: int = 1) -> None:
        self.indices = list(range(rank, num_items, world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class ClassBalancedBatchSampler(StepBatchSampler):
    """Endless class-balanced batches; batch ``k`` of rank ``r`` depends only on ``(seed, k, r)``.

    Args:
        targets: the class of every training item (a classification dataset's ``targets``).
        batch_size: per-rank batch size.
        seed: experiment seed.
        rank, world_size, start_step: as :class:`StepBatchSampler`.
        per_class: consecutive items drawn from each visited class (authors: 4).

    Raises:
        ValueError: no targets (``None`` or empty), or ``per_class < 1``.

    Example:
        >>> sampler = ClassBalancedBatchSampler([0] * 90 + [1] * 10, batch_size=8, seed=0)
        >>> [0 if i < 90 else 1 for i, _ in sampler.batch(0)].count(1)
        4
    """

    def __init__(
        self,
        targets: Sequence[int] | None,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        start_step: Callable[[], int] = lambda: 0,
        per_class: int = PER_CLASS,
    ) -> None:
        if targets is None or len(targets) == 0:
            raise ValueError(
                "data.sampler='class-balanced' needs a classification dataset with per-item "
                f"`targets`, got {'none' if targets is None else 'an empty list'}"
            )
        labels = np.asarray(targets, dtype=np.int64)  # (N,)
        super().__init__(labels.size, batch_size, seed, rank, world_size, start_step)
        if per_class < 1:
            raise ValueError(f"per_class must be >= 1, got {per_class}")
        self.per_class = int(per_class)
        present = np.unique(labels)
        self.classes = present.tolist()  # classes with at least one item
        self.items = [np.flatnonzero(labels == c) for c in self.classes]
        self._class_cache: dict[int, np.ndarray] = {}
        self._item_cache: dict[tuple[int, int], np.ndarray] = {}

    def _permutation(self, size: int, *key: int) -> np.ndarray:
        return np.random.default_rng([int(self.seed), *key]).permutation(size)

    def _class_order(self, round_: int) -> np.ndarray:
        if round_ not in self._class_cache:
            order = self._permutation(len(self.classes), 0, round_)
            self._class_cache = {round_: order}
        return self._class_cache[round_]

    def _item_order(self, slot: int, cycle: int) -> np.ndarray:
        key = (slot, cycle)
        if key not in self._item_cache:
            if len(self._item_cache) > 4 * len(self.classes):
                self._item_cache.clear()
            size = len(self.items[slot])
            self._item_cache[key] = self._permutation(size, 1, slot, cycle)
        return self._item_cache[key]

    def item(self, position: int) -> int:
        """The dataset index at stream position ``position``."""
        group, j = divmod(position, self.per_class)
        round_, k = divmod(group, len(self.classes))
        slot = int(self._class_order(round_)[k])  # the class visited by this group
        # The class is visited once per round, per_class items each time.
        cycle, offset = divmod(round_ * self.per_class + j, len(self.items[slot]))
        return int(self.items[slot][self._item_order(slot, cycle)[offset]])

    def batch(self, step: int) -> list[tuple[int, int]]:
        """The ``(index, sample_seed)`` pairs of training step ``step`` on this rank."""
        first = (step * self.world_size + self.rank) * self.batch_size
        return [
            (self.item(position), (self.seed * 1_000_003 + position) % 2**31)
            for position in range(first, first + self.batch_size)
        ]
