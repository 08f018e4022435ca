"""The files of ``semantic-anchors predict``: the input images, and the outputs in their folder.

Inputs (:func:`list_images`): image files, and folders, whose ``*.png``, ``*.jpg`` and ``*.jpeg``
files (any case; hidden ones skipped) are taken in name order, without descending into sub-folders.
An image is read in its own channels (:func:`read_image`): grey (``L``, ``1``, ``LA``) is one
channel, colour (``RGB``, ``RGBA``, ``P``) three; an alpha channel is dropped, and a palette image
is read as its colours. A model for three channels refuses a grey image and the other way round:
nothing is converted behind the user's back.

Outputs (:class:`OutputFolder`): everything is written into a hidden folder next to ``--out``
(``.NAME.partial-PID``), which is renamed to ``--out`` once the last file, ``predictions.json``
(the manifest), is written. A folder named ``--out`` is therefore always complete; an interrupted
run leaves at most the hidden partial folder, which the next run does not read.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "IMAGE_SUFFIXES",
    "MANIFEST",
    "OutputFolder",
    "image_channels",
    "list_images",
    "overlay",
    "palette",
    "read_image",
    "write_label_png",
    "write_overlay",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MANIFEST = "predictions.json"
PREDICTIONS_FORMAT = "semantic-anchors-predictions/1"
_GREY, _COLOUR = ("1", "L", "LA", "La"), ("RGB", "RGBA", "RGBa", "P", "PA")


def _pillow():
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError as err:
        raise ModuleNotFoundError(
            "reading and writing images needs Pillow: pip install 'semantic-anchors[data]'",
            name="PIL",
        ) from err
    return Image, UnidentifiedImageError


def list_images(inputs: list[str | os.PathLike[str]]) -> list[Path]:
    """The image files of ``inputs`` (files as given, folders as the module docstring says).

    Raises:
        FileNotFoundError: an input does not exist.
        ValueError: no input, a folder without images, or two images whose outputs would have the
            same name (the same file stem).
    """
    if not inputs:
        raise ValueError("no input: give image files or folders of images")
    found: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            images = sorted(
                p for p in item.iterdir()
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
            )  # fmt: skip
            if not images:
                raise ValueError(
                    f"{item}: a folder without images (looked for {'/'.join(IMAGE_SUFFIXES)} "
                    "files in it, not in its sub-folders)"
                )
            found += images
        elif item.is_file():
            found.append(item)
        else:
            raise FileNotFoundError(f"no such image file or folder: {item}")
    seen: dict[str, Path] = {}
    for path in found:
        if path.stem in seen and seen[path.stem].resolve() != path.resolve():
            raise ValueError(
                f"{seen[path.stem]} and {path} would write outputs of the same name "
                f"({path.stem!r}); rename one or predict them separately"
            )
        seen[path.stem] = path
    return list(dict.fromkeys(found))


def _open(path: Path):
    Image, UnidentifiedImageError = _pillow()
    try:
        return Image.open(path)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"{path}: not a readable image ({err})") from None


def image_channels(path: Path, in_channels: int) -> None:
    """Check from the file's header that ``path`` is an image of ``in_channels`` channels.

    Raises:
        ValueError: not an image, an unsupported mode (16-bit, float, CMYK, ...), or the wrong
            number of channels for the model (all naming the file).
    """
    with _open(path) as img:
        mode = img.mode
    if mode in _GREY:
        channels = 1
    elif mode in _COLOUR:
        channels = 3
    else:
        raise ValueError(
            f"{path}: image mode {mode!r} is not supported (8-bit grey or colour images only)"
        )
    if channels != in_channels:
        raise ValueError(
            f"{path}: a {channels}-channel image (mode {mode}), but the model takes "
            f"{in_channels}-channel images"
        )


def read_image(path: Path, in_channels: int) -> torch.Tensor:
    """Decode ``path`` (checked by :func:`image_channels`).

    Shape:
        Output: ``(in_channels, H, W)`` uint8.

    Raises:
        ValueError: as :func:`image_channels`, or the file is truncated or corrupt.
    """
    image_channels(path, in_channels)
    img = _open(path)
    try:
        with img:
            img.load()
            array = np.asarray(img.convert("L" if in_channels == 1 else "RGB"), dtype=np.uint8)
    except (OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"{path}: not a readable image ({err})") from None
    if array.ndim == 2:
        array = array[:, :, None]  # (H, W, 1)
    return torch.from_numpy(array.transpose(2, 0, 1).copy())  # (C, H, W), writable


def palette(num_classes: int) -> np.ndarray:
    """One colour per class: the bits of the class id spread over R, G and B, high bits first
    (the colours of the PASCAL VOC label maps; black is class 0, every id gets its own colour).

    Shape:
        Output: ``(num_classes, 3)`` uint8.
    """
    ids = np.arange(num_classes, dtype=np.int64)  # (K,)
    colours = np.zeros((num_classes, 3), dtype=np.int64)  # (K, 3)
    for shift in range(8):
        for channel in range(3):
            bit = (ids >> (3 * shift + channel)) & 1  # (K,)
            colours[:, channel] |= bit << (7 - shift)
    return colours.astype(np.uint8)


def write_label_png(labels: np.ndarray, path: Path, colours: np.ndarray) -> None:
    """A label map as a PNG: palette mode (``P``, the class colours) with up to 256 classes, else
    16-bit grey (``I;16``: PNG has no palette beyond 256 entries).

    Shape:
        labels: ``(H, W)`` integer class ids.
    """
    Image, _ = _pillow()
    if len(colours) <= 256:
        img = Image.fromarray(labels.astype(np.uint8))  # mode L
        img.putpalette(colours.reshape(-1).tolist())  # -> mode P
    else:
        img = Image.fromarray(labels.astype(np.uint16))
    img.save(path)


def write_overlay(image: torch.Tensor, labels: np.ndarray, colours: np.ndarray, path: Path) -> None:
    """:func:`overlay` as an RGB PNG."""
    Image, _ = _pillow()
    Image.fromarray(overlay(image, labels, colours)).save(path)


def overlay(image: torch.Tensor, labels: np.ndarray, colours: np.ndarray, alpha: float = 0.5):
    """The image blended with its label colours: ``(1 - alpha) * image + alpha * colour``.

    Shape:
        image: ``(C, H, W)`` uint8 (grey is shown as grey); labels: ``(H, W)``; output
        ``(H, W, 3)`` uint8.
    """
    rgb = image.expand(3, -1, -1) if image.shape[0] == 1 else image  # (3, H, W)
    rgb = rgb.permute(1, 2, 0).numpy().astype(np.float32)  # (H, W, 3)
    blended = (1 - alpha) * rgb + alpha * colours[labels].astype(np.float32)  # (H, W, 3)
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)


class OutputFolder:
    """The output folder of one ``predict`` call, written under a hidden name and renamed at the
    end (see the module docstring). Use as a context manager: on an error the partial folder is
    removed.

    Raises:
        FileExistsError: ``out`` exists and is not an empty folder.
    """

    def __init__(self, out: str | os.PathLike[str]) -> None:
        self.out = Path(out)
        if self.out.exists() and (not self.out.is_dir() or any(self.out.iterdir())):
            raise FileExistsError(
                f"{self.out} exists and is not an empty folder; give a new --out folder"
            )
        self.tmp = self.out.with_name(f".{self.out.name}.partial-{os.getpid()}")

    def __enter__(self) -> OutputFolder:
        shutil.rmtree(self.tmp, ignore_errors=True)  # left by a killed process of the same PID
        self.tmp.mkdir(parents=True)
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def path(self, name: str) -> Path:
        """Where a file goes while it is written (its name relative to ``out``)."""
        target = self.tmp / name
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def write_csv(self, name: str, header: list[str], rows: list[list[Any]]) -> None:
        with open(self.path(name), "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            writer.writerows(rows)

    def finish(self, manifest: dict[str, Any]) -> Path:
        """Write the manifest (last), then give the folder its name; returns ``out``."""
        manifest = {"format": PREDICTIONS_FORMAT, **manifest}
        self.path(MANIFEST).write_text(json.dumps(manifest, indent=2))
        if self.out.is_dir():  # an empty folder: replaced
            self.out.rmdir()
        os.replace(self.tmp, self.out)
        return self.out
