"""Every registry of the package by kind, for ``semantic-anchors list KIND`` and the docs.

Example:
    >>> from semantic_anchors.catalog import registry
    >>> registry("regularizers").names()[:3]
    ['car', 'center', 'cr']
    >>> "sar" in listing("regularizers")
    True
"""

from __future__ import annotations

import importlib
import inspect

from semantic_anchors._registry import Registry

__all__ = ["KINDS", "listing", "registry"]

# kind -> (module, attribute): each registry is imported only when its kind is asked for.
KINDS: dict[str, tuple[str, str]] = {
    "models": ("semantic_anchors.models.registry", "MODELS"),
    "datasets": ("semantic_anchors.data.registry", "DATASETS"),
    "regularizers": ("semantic_anchors.regularizers.registry", "REGULARIZERS"),
    "losses": ("semantic_anchors.losses.registry", "LOSSES"),
    "calibrations": ("semantic_anchors.calibration", "CALIBRATIONS"),
    "anchors": ("semantic_anchors.anchors", "ANCHORS"),
    "prototype-heads": ("semantic_anchors.models.segmentors.protoseg", "PROTOTYPE_HEADS"),
}


def registry(kind: str) -> Registry:
    """The registry of ``kind`` (a key of :data:`KINDS`).

    Raises:
        ValueError: unknown kind, listing the valid ones.
    """
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {list(KINDS)}, got {kind!r}")
    module, attribute = KINDS[kind]
    return getattr(importlib.import_module(module), attribute)


def _default(value: object) -> str:
    return "(required)" if value is inspect.Parameter.empty else repr(value)


def listing(kind: str, *, options: bool = False) -> str:
    """One line per name of ``kind``: the name, its task where it has one, its description;
    with ``options`` the keyword options a recipe may set, with their defaults, below each."""
    reg = registry(kind)
    entries = reg.entries()
    width = max((len(e.name) for e in entries), default=0)
    lines = [f"{kind} ({len(entries)}):"]
    for entry in entries:
        task = f"[{entry.tags['task']}] " if "task" in entry.tags else ""
        lines.append(f"  {entry.name:{width}s}  {task}{entry.description}")
        if options:
            for key, value in reg.options(entry.name).items():
                lines.append(f"  {'':{width}s}    {key} = {_default(value)}")
    return "\n".join(lines)
