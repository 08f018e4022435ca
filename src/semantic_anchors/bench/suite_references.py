"""``@run(DATASET/METHOD)`` in a dataset's overrides: the folder of another run of the same seed.

A two-stage design (pre-train, then train from it), e.g. ``model.pretrained=@run(fashion-lt/sar)``.
The referenced dataset must be listed earlier in the suite, so its runs are trained first;
:func:`check_references` says so when a suite is loaded, the runner substitutes the folders.
"""

from __future__ import annotations

import re

__all__ = ["RUN_REFERENCE", "check_references"]

RUN_REFERENCE = re.compile(r"@run\(([^/()\s]+)/([^/()\s]+)\)")
"""``@run(DATASET/METHOD)`` in an override: that run's folder (same seed)."""


def check_references(datasets: dict, methods: dict, source: str) -> None:
    """``@run(D/M)`` only in dataset overrides, naming a method and an earlier dataset."""
    order = list(datasets)
    for key, method in methods.items():
        if any(RUN_REFERENCE.search(item) for item in method.overrides):
            raise ValueError(
                f"{source}: methods.{key}: @run(...) references belong in a dataset's set (they "
                "name the runs a dataset is trained from)"
            )
    for position, (key, entry) in enumerate(datasets.items()):
        for item in entry.overrides:
            for dataset, method in RUN_REFERENCE.findall(item):
                if dataset not in order[:position]:
                    raise ValueError(
                        f"{source}: datasets.{key}: @run({dataset}/{method}) must name a dataset "
                        f"listed before {key!r} ({order[:position]})"
                    )
                if method not in methods:
                    raise ValueError(
                        f"{source}: datasets.{key}: @run({dataset}/{method}) names no method of "
                        f"the suite ({list(methods)})"
                    )
