"""A restricted unpickler for data files: builtin containers and plain numpy arrays only.

``pickle.load`` runs whatever a file asks for (``os.system``, ``eval``, ...): a downloaded or
shared dataset folder must not be able to run code. This unpickler resolves only the few globals
that pickled numpy arrays need (as written by numpy 1.x under Python 2, which is how the official
CIFAR files were made, and by numpy 1.x / 2.x under Python 3 with protocols 0-5); every other
global is refused before anything is called. Dicts, lists, tuples, str, bytes, ints and floats
need no global at all.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ALLOWED_GLOBALS", "UnsafePickleError", "safe_pickle_load"]


try:  # numpy >= 2 (numpy 1.26 has these too, for pickles written by numpy 2)
    from numpy._core.multiarray import _reconstruct, scalar
    from numpy._core.numeric import _frombuffer
except ImportError:  # pragma: no cover - older numpy 1.x
    from numpy.core.multiarray import _reconstruct, scalar
    from numpy.core.numeric import _frombuffer


class UnsafePickleError(pickle.UnpicklingError, ValueError):
    """The pickle references a global outside :data:`ALLOWED_GLOBALS` (nothing was run)."""


def _codecs_encode(obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` limited to what pickles use it for: ``str`` -> ``bytes`` in latin1."""
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1", "utf-8", "utf8"):
        raise UnsafePickleError(
            f"_codecs.encode is only allowed for str in latin1 / utf-8, got "
            f"{type(obj).__name__} with encoding {encoding!r}"
        )
    return obj.encode(encoding, errors)


#: ``(module, name)`` pairs a data pickle may reference, and what each resolves to. Module names
#: of numpy 1 (``numpy.core``, Python 2 and 3) and numpy 2 (``numpy._core``) both appear.
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,  # protocols 0-4
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.multiarray", "scalar"): scalar,  # numpy scalars (np.int64(3))
    ("numpy._core.multiarray", "scalar"): scalar,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,  # protocol 5
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _codecs_encode,  # bytes under protocols 0-2 written by Python 3
    # Containers without an opcode of their own below protocol 4 (Python 2 names them
    # __builtin__): plain constructors of data, they call nothing from the file.
    **{
        (module, kind.__name__): kind
        for module in ("builtins", "__builtin__")
        for kind in (set, frozenset, bytearray, complex)
    },
}

_ALLOWED_SUMMARY = (
    "builtin containers and scalars, numpy.ndarray / numpy.dtype / numpy scalars and their "
    "reconstructors, _codecs.encode"
)


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` resolves only :data:`ALLOWED_GLOBALS`."""

    def __init__(self, file: io.BufferedIOBase, *, source: str = "<pickle>", **kwargs: Any):
        super().__init__(file, **kwargs)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102
        key = (module, name)
        if key not in ALLOWED_GLOBALS:
            raise UnsafePickleError(
                f"refusing to load {self.source!r}: it references the global {module}.{name}, "
                f"which a data file never needs (allowed: {_ALLOWED_SUMMARY}); nothing in it was "
                "run. The file is corrupt or was crafted to run code: replace it with the "
                "original dataset file"
            )
        return ALLOWED_GLOBALS[key]

    def persistent_load(self, pid: Any) -> Any:  # noqa: D102
        raise UnsafePickleError(
            f"refusing to load {self.source!r}: it holds a persistent id ({pid!r}), which a data "
            "file never needs"
        )


def safe_pickle_load(path: str | Path, *, encoding: str = "ASCII") -> Any:
    """Unpickle ``path`` allowing only builtin containers / scalars and numpy arrays.

    Args:
        path: the pickle file.
        encoding: how Python-2 ``str`` objects are decoded (``"latin1"`` for numpy arrays
            written by Python 2, as the official CIFAR files are).

    Returns:
        The unpickled object.

    Raises:
        UnsafePickleError: (a ``ValueError``) the file references any other global; the message
            names the file and the global. Nothing from the file was called.
        OSError: the file cannot be read.
        pickle.UnpicklingError, EOFError, ...: the file is not a valid pickle.
    """
    path = Path(path)
    with open(path, "rb") as fh:
        return RestrictedUnpickler(fh, source=str(path), encoding=encoding).load()
