"""Reading images and label masks from disk with errors that name the file.

Every reader of an on-disk dataset goes through these functions so that a missing file, a corrupt
image, an image / mask size mismatch or a mask value outside the label set fails the same way:
``FileNotFoundError`` or ``ValueError`` with the path and the offending values.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

__all__ = [
    "LabelMapping",
    "check_same_size",
    "read_image",
    "read_mask",
    "require_dir",
    "require_file",
]

PathLike = str | os.PathLike


def require_dir(path: PathLike, layout: str) -> Path:
    """Return ``path`` if it is a directory, else raise naming the expected layout.

    Raises:
        FileNotFoundError: If ``path`` is not an existing directory.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"missing directory {str(path)!r}; expected layout:\n{layout}")
    return path


def require_file(path: PathLike, layout: str) -> Path:
    """Return ``path`` if it is a file, else raise naming the expected layout.

    Raises:
        FileNotFoundError: If ``path`` is not an existing file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing file {str(path)!r}; expected layout:\n{layout}")
    return path


def _open(path: PathLike):
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {str(path)!r}")
    try:
        img = Image.open(path)
        img.load()  # decode now so that a truncated file fails here, with its path
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"corrupt or unreadable image file {str(path)!r}: {err}") from err
    return img


def read_image(path: PathLike, mode: str = "RGB") -> np.ndarray:
    """Decode an image file into a ``uint8`` array.

    Args:
        path: Image file (any format Pillow decodes: PNG, JPEG, ...).
        mode: ``"RGB"`` (3 channels) or ``"L"`` (1 channel).

    Returns:
        ``uint8`` array of shape ``(H, W, 3)`` for RGB or ``(H, W, 1)`` for L.

    Shape:
        - output: ``(H, W, C)``

    Raises:
        FileNotFoundError: If the file does not exist (the message names it).
        ValueError: If the file cannot be decoded (the message names it), or ``mode`` is invalid.
    """
    if mode not in ("RGB", "L"):
        raise ValueError(f"`mode` must be 'RGB' or 'L', got {mode!r}")
    img = _open(path)
    arr = np.asarray(img.convert(mode), dtype=np.uint8)  # (H, W, 3) or (H, W)
    if arr.ndim == 2:
        arr = arr[:, :, None]  # (H, W, 1)
    return arr


def read_mask(path: PathLike) -> np.ndarray:
    """Decode a single-channel label PNG into an integer array without any colour conversion.

    Palette ("P") images give their palette indices, as in VOC / Pascal-Context annotations.

    Args:
        path: Label image file.

    Returns:
        Integer array ``(H, W)``: ``uint8`` for 8-bit masks, ``int32`` for 16 / 32-bit ones.

    Shape:
        - output: ``(H, W)``

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If the file cannot be decoded or is not a single-channel label image.
    """
    img = _open(path)
    if img.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L", "1"):
        raise ValueError(
            f"label image {str(path)!r} must be single-channel (mode L, P or I), got mode {img.mode!r}"
        )
    arr = np.asarray(img)  # (H, W)
    return arr.astype(np.uint8 if arr.dtype in (np.uint8, np.bool_) else np.int32, copy=False)


def check_same_size(image: np.ndarray, mask: np.ndarray, image_path: PathLike, mask_path: PathLike):
    """Raise unless ``image`` ``(H, W, C)`` and ``mask`` ``(H, W)`` have the same height and width.

    Raises:
        ValueError: Naming both files and both sizes.
    """
    if image.shape[:2] != mask.shape[:2]:
        raise ValueError(
            f"image {str(image_path)!r} has size (H, W) = {tuple(image.shape[:2])} but its mask "
            f"{str(mask_path)!r} has size {tuple(mask.shape[:2])}"
        )


class LabelMapping:
    """Maps raw mask values to training labels through a 256-entry lookup table, checking values.

    Args:
        mapping: ``{raw value: label}`` for every raw value of the label set; unlisted raw values
            are invalid. Labels equal to ``ignore_index`` are ignored pixels.
        ignore_index: Label of ignored pixels (255).
        description: How the label set is described in error messages.

    Example:
        >>> m = LabelMapping.reduce_zero_label(150)  # ADE20K: 0 -> 255, v -> v - 1
        >>> m(np.array([[0, 1, 150]], dtype=np.uint8), "x.png").tolist()
        [[255, 0, 149]]
    """

    def __init__(self, mapping: dict[int, int], ignore_index: int = 255, description: str = ""):
        self.valid = np.zeros(256, dtype=bool)  # (256,)
        self.lut = np.full(256, ignore_index, dtype=np.uint8)  # (256,)
        for raw, label in mapping.items():
            self.valid[raw] = True
            self.lut[raw] = label
        self.ignore_index = ignore_index
        self.description = description or f"raw values {sorted(mapping)}"

    @classmethod
    def identity(cls, num_classes: int, ignore_index: int = 255) -> LabelMapping:
        """Labels ``0 .. C-1`` kept as they are, ``ignore_index`` ignored."""
        mapping = {v: v for v in range(num_classes)} | {ignore_index: ignore_index}
        return cls(mapping, ignore_index, f"0..{num_classes - 1} or {ignore_index} (ignore)")

    @classmethod
    def reduce_zero_label(cls, num_classes: int, ignore_index: int = 255) -> LabelMapping:
        """Raw ``0`` (unlabelled) becomes ``ignore_index`` and raw ``v`` in ``1..C`` becomes ``v - 1``."""
        mapping = {0: ignore_index} | {v: v - 1 for v in range(1, num_classes + 1)}
        mapping[ignore_index] = ignore_index
        return cls(mapping, ignore_index, f"0..{num_classes} or {ignore_index} (ignore)")

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[int, int]], ignore_index: int = 255, description=""):
        """Build from ``(raw, label)`` pairs (for instance Cityscapes ``labelIds -> trainIds``)."""
        return cls(dict(pairs), ignore_index, description)

    def __call__(self, raw: np.ndarray, path: PathLike) -> np.ndarray:
        """Map a raw mask to labels, raising if a value is outside the label set.

        Shape:
            - raw: ``(H, W)`` integer
            - output: ``(H, W)`` ``uint8``

        Raises:
            ValueError: Naming ``path`` and the offending values.
        """
        if raw.dtype != np.uint8:
            if raw.size and (raw.min() < 0 or raw.max() > 255):
                bad = np.unique(raw[(raw < 0) | (raw > 255)])[:10].tolist()
                raise ValueError(
                    f"mask {str(path)!r} has values {bad} outside the label set "
                    f"({self.description})"
                )
            raw = raw.astype(np.uint8)
        counts = np.bincount(raw.ravel(), minlength=256)  # (256,) faster than np.unique on uint8
        bad = np.flatnonzero((counts > 0) & ~self.valid)
        if bad.size:
            raise ValueError(
                f"mask {str(path)!r} has values {bad[:10].tolist()} outside the label set "
                f"({self.description})"
            )
        return self.lut[raw]  # (H, W)
