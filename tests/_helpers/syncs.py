"""Count the calls that make a host wait for the device (a "sync") while a block runs.

On a CPU build nothing actually waits, so the calls themselves are counted: reading a tensor's
value on the host (``item``, ``bool``, ``float``, ``int``, ``tolist``, ``numpy``) and the ops
whose output size depends on the data (``nonzero``, ``unique``, ``masked_select``, boolean-mask
indexing), each of which blocks on a GPU. On a GPU, ``torch.cuda.set_sync_debug_mode`` is the
ground truth; this counter is its CPU stand-in.
"""

from __future__ import annotations

import contextlib
import functools
import traceback
from collections import Counter
from collections.abc import Iterator

import torch

_TENSOR_METHODS = (
    "item", "__bool__", "__float__", "__int__", "__index__", "tolist", "numpy", "nonzero",
    "unique", "masked_select", "argwhere",
)  # fmt: skip
_TORCH_FUNCTIONS = ("nonzero", "unique", "masked_select", "argwhere")

HOST_TENSOR_READS = ("torch/optim/",)
"""Callers whose tensor reads are of host tensors by design, never counted: the optimizers keep
their ``step`` counters on the CPU (unless ``capturable``) so that reading them waits for
nothing."""


class SyncLog:
    """What :func:`count_syncs` saw: ``counts`` per call name and a short stack per call."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.where: list[str] = []
        self.active = True

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def record(self, name: str) -> None:
        if not self.active:
            return
        frames = traceback.extract_stack(limit=8)[:-2]
        if any(part in frames[-1].filename for part in HOST_TENSOR_READS):
            return
        self.counts[name] += 1
        chain = " <- ".join(f"{f.filename}:{f.lineno}" for f in reversed(frames[-4:]))
        self.where.append(f"{name} at {chain}")

    def summary(self, limit: int = 5) -> str:
        """The distinct call sites seen, most frequent first (for an assertion message)."""
        sites = Counter(self.where).most_common(limit)
        return "; ".join(f"{n}x {site}" for site, n in sites)


def _wrap(original, name: str, log: SyncLog):
    @functools.wraps(original)
    def counted(*args, **kwargs):
        log.record(name)
        with _paused(log):  # what the original calls internally is not counted twice
            return original(*args, **kwargs)

    return counted


@contextlib.contextmanager
def _paused(log: SyncLog) -> Iterator[None]:
    was, log.active = log.active, False
    try:
        yield
    finally:
        log.active = was


def _getitem(original, log: SyncLog):
    @functools.wraps(original)
    def indexed(self, index):
        parts = index if isinstance(index, tuple) else (index,)
        if any(isinstance(p, torch.Tensor) and p.dtype == torch.bool for p in parts):
            log.record("bool-mask indexing")
        with _paused(log):
            return original(self, index)

    return indexed


@contextlib.contextmanager
def count_syncs() -> Iterator[SyncLog]:
    """Patch the syncing calls for the duration of the block and yield their :class:`SyncLog`."""
    log = SyncLog()
    saved: list[tuple[object, str, object]] = []
    for name in _TENSOR_METHODS:
        saved.append((torch.Tensor, name, getattr(torch.Tensor, name)))
    for name in _TORCH_FUNCTIONS:
        saved.append((torch, name, getattr(torch, name)))
    saved.append((torch.Tensor, "__getitem__", torch.Tensor.__getitem__))
    try:
        for owner, name, original in saved:
            if name == "__getitem__":
                wrapped = _getitem(original, log)
            else:
                wrapped = _wrap(original, f"{getattr(owner, '__name__', owner)}.{name}", log)
            setattr(owner, name, wrapped)
        yield log
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)
