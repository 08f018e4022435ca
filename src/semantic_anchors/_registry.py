"""The one registry mechanism: models, datasets, regularizers, losses, calibrations and anchors.

A :class:`Registry` maps names to what builds an object of its kind (a class or a function),
with a one-line description and optional tags (a model's or dataset's ``task``). Registration is
explicit: ``@REG.register(...)`` on the builder, or ``REG.add(name, obj)``; a registry that is
filled by decorators names the modules that hold them (``modules=``) and imports them before any
query, so what it lists never depends on what the caller imported first.

Example:
    >>> colours = Registry("colour")
    >>> @colours.register(description="The colour of the sky.")
    ... def blue(shade: float = 0.5): return ("blue", shade)
    >>> colours.names(), colours.entry("BLUE").description, colours.options("blue")
    (['blue'], 'The colour of the sky.', {'shade': 0.5})
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")
F = TypeVar("F")

__all__ = ["Entry", "Registry", "canonical_name", "check_options"]


def canonical_name(name: str) -> str:
    """The registry key of ``name``: stripped, lower case, ``_`` written ``-``."""
    return str(name).strip().lower().replace("_", "-")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered name.

    Attributes:
        name: the registry key.
        obj: the class or function that builds it; ``None`` for a name that builds nothing
            (``regularizer.name: none``).
        description: one line, for ``semantic-anchors list`` and the docs.
        tags: extra facts used for filtering, e.g. ``{"task": "segmentation"}``.
    """

    name: str
    obj: T | None
    description: str
    tags: Mapping[str, str] = field(default_factory=dict)


def _summary(obj: Any) -> str:
    """The first paragraph of ``obj``'s docstring, on one line."""
    doc = inspect.getdoc(obj) if obj is not None else None
    return " ".join(doc.strip().split("\n\n")[0].split()) if doc else ""


class Registry(Mapping[str, Any], Generic[T]):
    """Names of one kind and what builds each.

    Args:
        kind: what is registered (``"model"``, ``"loss"``, ...), used in every message.
        normalize: maps a user's name to its key (default :func:`canonical_name`: case, ``_`` /
            ``-`` and surrounding spaces do not matter); ``str`` keeps names exact.
        supplied: constructor arguments the caller of the registry provides itself (hidden
            from :meth:`options` and not accepted as user options).
        modules: modules whose import registers entries; imported before every query.
        unique: a name given twice is an error even for the same object (otherwise registering
            the same object again, as a re-imported module does, is allowed).

    A registry is a read-only mapping from keys to their ``obj``.
    """

    def __init__(
        self,
        kind: str,
        *,
        normalize: Callable[[str], str] = canonical_name,
        supplied: tuple[str, ...] = (),
        modules: tuple[str, ...] = (),
        unique: bool = False,
    ) -> None:
        self.kind, self.supplied, self.unique = kind, tuple(supplied), unique
        self._normalize, self._modules = normalize, tuple(modules)
        self._entries: dict[str, Entry[T]] = {}
        self._loaded = not modules

    # ----------------------------------------------------------------------------- registering
    def add(
        self, name: str, obj: T | None, *, description: str | None = None, **tags: str
    ) -> T | None:
        """Registers ``obj`` under ``name``; returns ``obj``.

        Raises:
            ValueError: ``name`` is already registered (to something else, or at all when the
                registry is ``unique``), or no description is given and ``obj`` has no docstring.
        """
        key = self._normalize(name)
        old = self._entries.get(key)
        if old is not None and (self.unique or old.obj is not obj):
            raise ValueError(f"{self.kind} {key!r} is already registered to {old.obj!r}")
        text = description if description is not None else _summary(obj)
        if not text:
            raise ValueError(f"{self.kind} {key!r}: give a description or a docstring")
        self._entries[key] = Entry(key, obj, text, dict(tags))
        return obj

    def register(
        self, name: str | None = None, *, description: str | None = None, **tags: str
    ) -> Callable[[F], F]:
        """Decorator form of :meth:`add` (``name`` defaults to the object's ``__name__``)."""

        def decorator(obj: F) -> F:
            self.add(name or obj.__name__, obj, description=description, **tags)  # type: ignore[arg-type]
            return obj

        return decorator

    def unregister(self, name: str) -> None:
        """Removes ``name`` (for tests that register a temporary entry)."""
        self._entries.pop(self._normalize(name), None)

    # ----------------------------------------------------------------------------- querying
    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True  # before importing: the modules query nothing, but be safe
            for module in self._modules:
                importlib.import_module(module)

    def entry(self, name: str) -> Entry[T]:
        """The entry for ``name``.

        Raises:
            TypeError: ``name`` is not a string.
            ValueError: unknown name; the message lists close matches and every valid name.
        """
        if not isinstance(name, str):
            raise TypeError(f"{self.kind} name: expected a str, got {type(name).__name__}")
        self._load()
        key = self._normalize(name)
        if key not in self._entries:
            close = difflib.get_close_matches(key, list(self._entries), n=3, cutoff=0.5)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ValueError(f"unknown {self.kind} {name!r}{hint}; valid: {self.names()}")
        return self._entries[key]

    def names(self, pattern: str | None = None, **tags: str) -> list[str]:
        """Sorted keys, optionally matching a shell-style ``pattern`` and equal ``tags``."""
        self._load()
        return sorted(
            e.name
            for e in self._entries.values()
            if (pattern is None or fnmatch.fnmatchcase(e.name, pattern))
            and all(e.tags.get(k) == v for k, v in tags.items())
        )

    def entries(self) -> list[Entry[T]]:
        """Every entry, sorted by name."""
        return [self._entries[name] for name in self.names()]

    def options(self, name: str) -> dict[str, Any]:
        """The keyword options a user may give ``name``, with their defaults (``inspect.Parameter.empty``
        where required); ``{}`` for a name that builds nothing."""
        obj = self.entry(name).obj
        if obj is None:
            return {}
        return {
            p.name: p.default
            for p in inspect.signature(obj).parameters.values()
            if p.name not in ("self", *self.supplied)
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        }

    def check_options(self, name: str, options: Mapping[str, Any]) -> None:
        """Raises ``ValueError`` naming every option of ``options`` that ``name`` does not take."""
        entry = self.entry(name)
        if entry.obj is None:
            if options:
                raise ValueError(
                    f"{self.kind} {entry.name!r} takes no options, got {sorted(options)}"
                )
            return
        check_options(self.kind, entry.name, entry.obj, options, self.supplied)

    # ----------------------------------------------------------------------------- Mapping
    def __getitem__(self, name: str) -> T | None:
        self._load()
        try:
            return self._entries[self._normalize(name)].obj
        except KeyError:
            raise KeyError(name) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._load()
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load()
        return isinstance(name, str) and self._normalize(name) in self._entries

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self)} names)"


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
