"""Name lookup and option checks shared by the regularizer and loss registries."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def lookup(kind: str, name: str, table: Mapping[str, T]) -> tuple[str, T]:
    """``(canonical key, entry)`` for ``name`` (case and ``_`` / ``-`` insensitive).

    Raises:
        ValueError: unknown name, listing close matches and every valid name.
    """
    key = str(name).lower().replace("_", "-")
    if key not in table:
        close = difflib.get_close_matches(key, list(table), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(f"unknown {kind} {name!r}{hint}; valid: {sorted(table)}")
    return key, table[key]


def check_options(
    kind: str, key: str, factory: Callable[..., Any], options: Mapping[str, Any], supplied: tuple
) -> None:
    """Raise if ``options`` holds a keyword ``factory`` does not take (``supplied`` excluded).

    Raises:
        ValueError: naming the unknown options and listing the valid ones.
    """
    accepted = [p for p in inspect.signature(factory).parameters if p not in ("self", *supplied)]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(
            f"{kind} {key!r} does not take option(s) {unknown}; valid options: {accepted}"
        )
