"""Dataset registry: ``build_dataset(name, ...)`` and ``list_datasets()``."""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable

__all__ = ["build_dataset", "list_datasets", "register_dataset"]

_REGISTRY: dict[str, type] = {}
_MODULES = ("synthlt", "fashion", "cityscapes", "ade20k", "pascal_context", "cifar", "cub")


def _canonical(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def register_dataset(name: str) -> Callable[[type], type]:
    """Class decorator adding a dataset to the registry under ``name``.

    Raises:
        ValueError: If ``name`` is already registered to another class.
    """

    def decorator(cls: type) -> type:
        key = _canonical(name)
        if key in _REGISTRY and _REGISTRY[key] is not cls:
            raise ValueError(f"dataset name {key!r} is already registered to {_REGISTRY[key]}")
        _REGISTRY[key] = cls
        return cls

    return decorator


def _populate() -> None:
    for module in _MODULES:
        importlib.import_module(f"{__package__}.datasets.{module}")


def list_datasets() -> list[str]:
    """Names accepted by :func:`build_dataset`, sorted.

    Example:
        >>> "synthlt" in list_datasets()
        True
    """
    _populate()
    return sorted(_REGISTRY)


def build_dataset(name: str, root=None, split: str = "train", transform=None, **kwargs):
    """Create a registered dataset.

    Args:
        name: A name from :func:`list_datasets` (case and ``_`` / ``-`` insensitive).
        root: Folder holding the data on disk; ``None`` for generated datasets (``synthlt``) and for
            the Fashion-MNIST ones (their default root is the Debian package folder).
        split: ``"train"``, ``"val"`` (and ``"test"`` where it exists).
        transform: ``None`` (items are ``(uint8 image (C, H, W), target)``) or a callable
            ``transform(image, target)``, e.g. from :func:`~semantic_anchors.data.build_transforms`.
        **kwargs: Dataset options (``seed``, ``imbalance_factor``, ``num_images``, ...).

    Returns:
        The dataset, a ``torch.utils.data.Dataset`` with ``name``, ``task``, ``class_names``,
        ``num_classes``, ``in_channels``, ``ignore_index``, ``class_frequencies`` and ``groups``.

    Raises:
        ValueError: If ``name`` is unknown (lists the valid names and close matches), or an option
            is not accepted by the dataset (lists the accepted ones).
        FileNotFoundError: If the files of an on-disk dataset are missing (names the layout).

    Example:
        >>> ds = build_dataset("synthlt", split="val", num_images=8)
        >>> image, target = ds[0]
        >>> image.dtype, target.dtype, tuple(target.shape)
        (torch.uint8, torch.int64, (64, 64))
    """
    if not isinstance(name, str):
        raise ValueError(f"`name` must be a dataset name (str), got {type(name).__name__}")
    valid = list_datasets()
    key = _canonical(name)
    if key not in _REGISTRY:
        close = difflib.get_close_matches(key, valid, n=3, cutoff=0.5)
        hint = f" Did you mean {close}?" if close else ""
        raise ValueError(f"unknown dataset {name!r}; valid names: {valid}.{hint}")
    cls = _REGISTRY[key]
    params = inspect.signature(cls.__init__).parameters
    accepted = [p for p in params if p not in ("self", "root", "split", "transform")]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(f"dataset {key!r} got unknown options {unknown}; accepted: {accepted}")
    return cls(root=root, split=split, transform=transform, **kwargs)
