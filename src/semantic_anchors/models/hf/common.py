"""What the Hugging Face adapters share: the lazy import, config building, checkpoint loading.

:mod:`.classifiers`, :mod:`.segformer` and :mod:`.upernet` import these from here;
:mod:`semantic_anchors.models.hf` re-exports them and imports the adapters (which registers
them), so the adapters never import the module that imports them. ``transformers`` itself is
imported only when :func:`import_transformers` is called.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["build_hf_model", "import_transformers", "make_config"]

# Keys of the task heads: they may be missing from, mismatched with or unexpected in a
# checkpoint (another task's or another class count's), and are then freshly initialised.
_HEAD_PREFIXES = ("decode_head.", "auxiliary_head.", "classifier.", "class_predictor.")
_LISTED = 8


def import_transformers() -> Any:
    """Imports ``transformers`` or fails with the install line.

    Raises:
        ImportError: ``transformers`` is not installed.
    """
    try:
        import transformers
    except ImportError as error:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            "the Hugging Face models need the optional extra: "
            "pip install 'semantic-anchors[hf]' (transformers>=5,<6)"
        ) from error
    return transformers


def make_config(config_class: type, defaults: Mapping[str, Any], overrides: Any, name: str) -> Any:
    """``config_class(**defaults, **overrides)``, refusing keys the config does not have.

    Raises:
        TypeError: ``overrides`` is not a mapping.
        ValueError: a key of ``overrides`` is no attribute of ``config_class``.
    """
    if overrides is None:
        overrides = {}
    if not isinstance(overrides, Mapping):
        raise TypeError(f"{name}: expected a dict or None, got {type(overrides).__name__}")
    known = config_class()
    unknown = sorted(key for key in overrides if not hasattr(known, key))
    if unknown:
        raise ValueError(
            f"{name}: {config_class.__name__} has no field(s) {unknown} (check the spelling)"
        )
    return config_class(**{**defaults, **overrides})


def _head_key(key: str) -> bool:
    return key.startswith(_HEAD_PREFIXES)


def _listed(keys: Any) -> str:
    keys = sorted(keys)
    more = f" (+{len(keys) - _LISTED} more)" if len(keys) > _LISTED else ""
    return f"{keys[:_LISTED]}{more}"


def build_hf_model(
    model_class: type, config: Any, pretrained: str | os.PathLike[str] | None
) -> Any:
    """``model_class(config)``, or ``model_class.from_pretrained(pretrained, config=config)``.

    With ``pretrained`` (a local ``save_pretrained`` folder) the architecture is ``config`` (ours,
    with ``num_labels`` = our ``num_classes``), the weights the folder's. Every encoder weight must
    load: a missing, unexpected or differently shaped key outside the heads is an error. Head keys
    (``decode_head.*``, ``auxiliary_head.*``, ``classifier.*``) that are absent or of another
    shape (another class count, another task's checkpoint) are freshly initialised, with a
    warning that lists them. The loading report is kept as ``model.pretrained_report``.

    Raises:
        FileNotFoundError: ``pretrained`` is not a directory.
        ValueError: an encoder key is missing, unexpected or of another shape.
    """
    if pretrained is None:
        return model_class(config)
    folder = Path(pretrained)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"pretrained: expected a local transformers folder (save_pretrained), "
            f"got {str(folder)!r} (not a directory)"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # transformers' own loading notes; ours follow
        model, info = model_class.from_pretrained(
            folder,
            config=config,
            local_files_only=True,
            ignore_mismatched_sizes=True,
            output_loading_info=True,
        )
    mismatched = {key for key, *_ in info["mismatched_keys"]}
    bad = {
        "missing": {k for k in info["missing_keys"] if not _head_key(k)},
        "unexpected": {k for k in info["unexpected_keys"] if not _head_key(k)},
        "of another shape": {k for k in mismatched if not _head_key(k)},
    }
    problems = [f"{what}: {_listed(keys)}" for what, keys in bad.items() if keys]
    if problems:
        raise ValueError(
            f"pretrained: {str(folder)!r} does not fit {model_class.__name__} built from this "
            f"config; " + "; ".join(problems)
        )
    fresh = {k for k in info["missing_keys"] if _head_key(k)} | mismatched
    if fresh:
        warnings.warn(
            f"pretrained: {str(folder)!r}: head weights freshly initialised (absent or another "
            f"number of classes): {_listed(fresh)}",
            stacklevel=3,
        )
    model.pretrained_report = {"freshly_initialised": sorted(fresh), **info}
    return model
