"""Import mmsegmentation 1.x for the tests that compare with it or plug into it.

It needs the ``[ref]`` install (``pip install -c constraints.txt mmengine==0.10.7 mmcv-lite==2.1.0
mmsegmentation==1.2.2 ftfy regex``); without it the tests that use it skip. mmcv-lite has no
compiled ops and mmseg imports ``mmcv.ops`` at package import, so a placeholder module stands in
for it: every name in it is a class that fails when used. The models the tests build (ResNet,
HRNet, FCNHead, OCRHead, their bases and the segmentors) call no op.

A test module uses it through a module-scoped fixture::

    @pytest.fixture(scope="module")
    def mmseg() -> Iterator[types.SimpleNamespace]:
        with imported_mmseg() as namespace:
            yield namespace
"""

from __future__ import annotations

import importlib
import sys
import types
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest


def placeholder_ops() -> types.ModuleType:
    """``mmcv.ops`` whose every name is a class that fails when used (never, in these tests)."""
    module = types.ModuleType("mmcv.ops")

    def missing(name: str) -> type:
        def fail(self: Any, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError(f"mmcv.ops.{name}: a placeholder (mmcv-lite has no compiled ops)")

        return type(name, (), {"__init__": fail, "__call__": fail})

    def __getattr__(name: str) -> type:
        if name.startswith("__"):
            raise AttributeError(name)
        return missing(name)

    module.__getattr__ = __getattr__  # type: ignore[method-assign]
    return module


@contextmanager
def imported_mmseg() -> Iterator[types.SimpleNamespace]:
    """mmseg's ``MODELS`` registry, with the placeholder ``mmcv.ops`` in place while it is open.

    Skips the calling test (``pytest.importorskip``) when mmengine, mmcv or mmseg is missing.
    mmseg's import-time warnings are silenced; the placeholder is removed from ``sys.modules``
    on exit (modules imported meanwhile keep the names they took from it).
    """
    for name in ("mmengine", "mmcv", "mmseg"):
        pytest.importorskip(name)
    with pytest.MonkeyPatch.context() as patch:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                importlib.import_module("mmcv.ops")
            except ImportError:
                patch.setitem(sys.modules, "mmcv.ops", placeholder_ops())
            importlib.import_module("mmseg.models")
            registry = importlib.import_module("mmseg.registry")
        yield types.SimpleNamespace(MODELS=registry.MODELS)
