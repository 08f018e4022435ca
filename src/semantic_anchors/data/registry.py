"""Dataset registry: ``build_dataset(name, ...)`` and ``list_datasets()``."""

from __future__ import annotations

from collections.abc import Callable

from semantic_anchors._registry import Registry

__all__ = ["DATASETS", "build_dataset", "list_datasets", "register_dataset"]

_MODULES = ("synthlt", "fashion", "cityscapes", "ade20k", "pascal_context", "cifar", "cub")
DATASETS: Registry[type] = Registry(
    "dataset",
    supplied=("root", "split", "transform"),
    modules=tuple(f"semantic_anchors.data.datasets.{m}" for m in _MODULES),
)


def register_dataset(name: str, *, description: str | None = None) -> Callable[[type], type]:
    """Class decorator adding a dataset to :data:`DATASETS` under ``name``.

    Raises:
        ValueError: If ``name`` is already registered to another class.
    """
    return DATASETS.register(name, description=description)


def list_datasets() -> list[str]:
    """Names accepted by :func:`build_dataset`, sorted.

    Example:
        >>> "synthlt" in list_datasets()
        True
    """
    return DATASETS.names()


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
    DATASETS.check_options(name, kwargs)
    cls = DATASETS[name]
    return cls(root=root, split=split, transform=transform, **kwargs)
