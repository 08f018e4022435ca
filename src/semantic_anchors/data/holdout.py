"""A held-out part of the training data: what hyper-parameters are chosen on.

Tuning on the validation set that is then reported makes the reported number optimistic. With
``data.holdout: 0.2`` a run trains on 80% of the training items and validates on the other 20%,
with the validation transforms; the reported validation split is never read. The split depends on
``data.holdout_seed`` only (not on the run's seed), so every trial of a sweep and every seed sees
the same two parts.

Classification datasets with ``targets`` are split per class (each class with two or more items
keeps at least one in each part, so the tail is represented on both sides); segmentation datasets
are split by image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["HoldoutSubset", "holdout_indices"]


def _take(count: int, fraction: float) -> int:
    """Items of ``count`` that go to the held-out part: the rounded share, at least one and never
    all of them (0 when ``count`` < 2)."""
    if count < 2:
        return 0
    return min(count - 1, max(1, round(fraction * count)))


def holdout_indices(
    num_items: int, fraction: float, seed: int = 0, targets: Sequence[int] | None = None
) -> tuple[list[int], list[int]]:
    """``(kept, held_out)``: sorted dataset indices of the two parts.

    Args:
        num_items: dataset length.
        fraction: the share held out, ``0 < fraction < 1``.
        seed: the split's seed.
        targets: per-item class labels; given, each class is split on its own (stratified).

    Raises:
        ValueError: ``fraction`` outside (0, 1), fewer than two items, or ``targets`` of another
            length than ``num_items``.

    Example:
        >>> kept, held = holdout_indices(10, 0.2, seed=0)
        >>> len(kept), len(held), sorted(kept + held) == list(range(10))
        (8, 2, True)
    """
    if isinstance(fraction, bool) or not 0 < float(fraction) < 1:
        raise ValueError(f"data.holdout: expected a fraction in (0, 1), received {fraction!r}")
    if num_items < 2:
        raise ValueError(
            f"data.holdout needs a training set of at least 2 items to split, it has {num_items}"
        )
    generator = torch.Generator().manual_seed(int(seed))
    if targets is None:
        order = torch.randperm(num_items, generator=generator).tolist()
        cut = _take(num_items, float(fraction))
        return sorted(order[cut:]), sorted(order[:cut])
    labels = [int(t) for t in targets]
    if len(labels) != num_items:
        raise ValueError(f"targets: {len(labels)} labels for a dataset of {num_items} items")
    by_class: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(label, []).append(index)
    kept: list[int] = []
    held: list[int] = []
    for label in sorted(by_class):
        members = by_class[label]
        order = torch.randperm(len(members), generator=generator).tolist()
        cut = _take(len(members), float(fraction))
        held += [members[i] for i in order[:cut]]
        kept += [members[i] for i in order[cut:]]
    if not held:
        raise ValueError(
            f"data.holdout={fraction}: no class has two items, so nothing can be held out"
        )
    return sorted(kept), sorted(held)


class HoldoutSubset(torch.utils.data.Dataset):
    """One part of a dataset split by :func:`holdout_indices`.

    Indexing, ``len`` and ``targets`` are the part's; everything else (``task``, ``class_names``,
    ``class_frequencies``, ``mean`` ...) is the whole training set's, so class weights and
    head / body / tail groups are the same in both parts and in a run without a hold-out.

    Args:
        dataset: the training dataset.
        indices: the part's indices into ``dataset``.
        part: ``"train"`` or ``"holdout"`` (shown in ``repr``).
    """

    def __init__(self, dataset: Any, indices: Sequence[int], part: str) -> None:
        self.dataset, self.indices, self.part = dataset, list(indices), part
        targets = getattr(dataset, "targets", None)
        if targets is not None:
            self.targets = [targets[i] for i in self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a {self.part} part of {len(self)}")
        return self.dataset[self.indices[index]]

    def __getattr__(self, name: str) -> Any:
        if name in ("dataset", "indices", "part") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __repr__(self) -> str:
        return f"HoldoutSubset({self.part}, items={len(self)} of {len(self.dataset)}: {self.dataset!r})"
