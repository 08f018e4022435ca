"""Old import paths of modules that moved: importing one warns once and gives the new names.

A package that moves a module lists ``{old dotted name: new dotted name(s)}`` with
:func:`keep_old_paths`; ``import old`` (or ``from old import X``) then still works: it emits a
``DeprecationWarning`` naming the new path and returns a module holding the new module's public
names (the same objects, so ``isinstance`` and the registries see no difference). Nothing is
imported until an old path is.

Example:
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     from semantic_anchors.models.hrnet_models import build_hrnet_segmentor
    >>> from semantic_anchors.models.segmentors.hrnet import build_hrnet_segmentor as new
    >>> build_hrnet_segmentor is new, "models.segmentors.hrnet" in str(caught[0].message)
    (True, True)
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from collections.abc import Mapping
from types import ModuleType

__all__ = ["keep_old_paths"]


class _OldPaths(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the moved modules' old names and fills each from its new module(s)."""

    def __init__(self) -> None:
        self.moves: dict[str, tuple[str, ...]] = {}

    def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001  (the finder protocol)
        if fullname not in self.moves:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None  # a plain module

    def exec_module(self, module: ModuleType) -> None:
        targets = self.moves[module.__name__]
        warnings.warn(
            f"{module.__name__} moved to {' and '.join(targets)}; import from there (the old "
            "path will be removed)",
            DeprecationWarning,
            stacklevel=2,
        )
        public: list[str] = []
        for target in targets:
            new = importlib.import_module(target)
            names = getattr(new, "__all__", [n for n in vars(new) if not n.startswith("_")])
            module.__dict__.update({name: getattr(new, name) for name in names})
            public.extend(names)
        module.__all__ = public
        module.__doc__ = f"Moved to {' and '.join(targets)} (deprecated path)."


_FINDER = _OldPaths()


def keep_old_paths(moves: Mapping[str, str | tuple[str, ...]]) -> None:
    """Keep each old dotted module name importable as an alias of its new module(s).

    Raises:
        ValueError: an old name given twice with different targets.
    """
    for old, new in moves.items():
        targets = (new,) if isinstance(new, str) else tuple(new)
        if _FINDER.moves.get(old, targets) != targets:
            raise ValueError(f"{old}: already moved to {_FINDER.moves[old]}, not {targets}")
        _FINDER.moves[old] = targets
    if _FINDER not in sys.meta_path:
        sys.meta_path.append(_FINDER)
