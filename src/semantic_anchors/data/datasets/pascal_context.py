"""Pascal-Context-59 reader (VOC2010 layout with the context masks of mmseg's converter)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..io import LabelMapping, require_dir, require_file
from ..registry import register_dataset
from .base import resolve_root
from .folder import SegmentationFolderDataset

__all__ = ["PASCAL_CONTEXT_59_CLASSES", "PascalContext59"]

PASCAL_CONTEXT_59_CLASSES = [
    "aeroplane", "bag", "bed", "bedclothes", "bench", "bicycle", "bird", "boat", "book", "bottle",
    "building", "bus", "cabinet", "car", "cat", "ceiling", "chair", "cloth", "computer", "cow",
    "cup", "curtain", "dog", "door", "fence", "floor", "flower", "food", "grass", "ground", "horse",
    "keyboard", "light", "motorbike", "mountain", "mouse", "person", "plate", "platform",
    "pottedplant", "road", "rock", "sheep", "shelves", "sidewalk", "sign", "sky", "snow", "sofa",
    "table", "track", "train", "tree", "truck", "tvmonitor", "wall", "water", "window", "wood",
]  # fmt: skip

_LAYOUT = """\
<root>/                         (the VOC2010 folder, or a parent holding VOCdevkit/VOC2010/ or VOC2010/)
  JPEGImages/<id>.jpg
  SegmentationClassContext/<id>.png    (0 = background, 1..59 = classes; 0 becomes 255, v becomes v - 1)
  ImageSets/SegmentationContext/train.txt, val.txt    (one <id> per line)"""


@register_dataset("pascal-context-59")
class PascalContext59(SegmentationFolderDataset):
    """Pascal-Context with 59 classes (train 4,996 / val 5,104 images), ``reduce_zero_label``.

    Args:
        root: The ``VOC2010`` folder (or a parent holding ``VOCdevkit/VOC2010`` or ``VOC2010``).
        split: ``"train"`` or ``"val"``.
        transform: Optional ``transform(image, target)``.

    Shape:
        - image: ``(3, H, W)`` uint8; target: ``(H, W)`` int64

    Raises:
        FileNotFoundError: If the folders, split list or a listed file are missing (names the layout).
        ValueError: On a corrupt image, a size mismatch or out-of-set mask values (on access).
    """

    name = "pascal-context-59"
    class_names = PASCAL_CONTEXT_59_CLASSES
    layout = _LAYOUT
    _mapping = LabelMapping.reduce_zero_label(59)

    def __init__(self, root=None, split: str = "train", transform: Callable | None = None):
        root = resolve_root(root, ["VOCdevkit/VOC2010", "VOC2010"], "JPEGImages", _LAYOUT)
        super().__init__(root, split, transform)

    def _list_samples(self, split: str) -> list[tuple[Path, Path]]:
        image_dir = require_dir(self.root / "JPEGImages", _LAYOUT)
        mask_dir = require_dir(self.root / "SegmentationClassContext", _LAYOUT)
        listing = require_file(
            self.root / "ImageSets" / "SegmentationContext" / f"{split}.txt", _LAYOUT
        )
        samples = []
        for line in listing.read_text().splitlines():
            sample_id = line.strip()
            if not sample_id:
                continue
            image_path = require_file(image_dir / f"{sample_id}.jpg", _LAYOUT)
            mask_path = require_file(mask_dir / f"{sample_id}.png", _LAYOUT)
            samples.append((image_path, mask_path))
        return samples

    def _mapping_for(self, mask_path: Path) -> LabelMapping:
        return self._mapping
