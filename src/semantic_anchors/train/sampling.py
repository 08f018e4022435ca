"""Class-balanced training batches (``data.sampler: class-balanced``), a pure function of the step.

As the class-aware sampler of MiSLAS' code (from Shen et al.'s relay backpropagation): the stream
visits the classes in a random order, pass after pass (a fresh order each pass), and takes
``per_class`` consecutive items of the visited class from that class's own random cycle (a fresh
permutation of its items each time they are used up). Every class is therefore drawn equally
often whatever its size. Unlike the authors' stateful iterators, the item at stream position
``p`` is computed from ``(seed, p)`` alone, so a resumed run sees the same batches as a straight
one (as :class:`~semantic_anchors.train.data.StepBatchSampler`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from semantic_anchors.train.data import StepBatchSampler

__all__ = ["ClassBalancedBatchSampler"]

PER_CLASS = 4  # the authors' ClassAwareSampler(num_samples_cls=4)


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
