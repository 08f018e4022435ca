"""ADE20K (SceneParsing, ADEChallengeData2016) reader: 150 classes, zero label reduced."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..io import LabelMapping, require_dir
from ..registry import register_dataset
from .base import resolve_root
from .folder import SegmentationFolderDataset

__all__ = ["ADE20K", "ADE20K_CLASSES"]

ADE20K_CLASSES = [
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain",
    "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field",
    "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub", "railing",
    "cushion", "base", "box", "column", "signboard", "chest of drawers", "counter", "sand", "sink",
    "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs", "runway", "case",
    "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase", "blind",
    "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm",
    "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
    "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth",
    "television receiver", "airplane", "dirt track", "apparel", "pole", "land", "bannister",
    "escalator", "ottoman", "bottle", "buffet", "poster", "stage", "van", "ship", "fountain",
    "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool", "barrel",
    "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step",
    "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen",
    "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan",
    "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator", "glass",
    "clock", "flag",
]  # fmt: skip

_LAYOUT = """\
<root>/                                   (or <root>/ADEChallengeData2016/)
  images/training/ADE_train_00000001.jpg ...      images/validation/ADE_val_00000001.jpg ...
  annotations/training/ADE_train_00000001.png ... annotations/validation/ADE_val_00000001.png ...
      (masks: 0 = other / unlabelled, 1..150 = classes; 0 becomes 255 and v becomes v - 1)"""

_FOLDERS = {"train": "training", "val": "validation"}


@register_dataset("ade20k")
class ADE20K(SegmentationFolderDataset):
    """ADE20K scene parsing, 150 classes (train 20,210 / val 2,000 images).

    Masks are read with ``reduce_zero_label`` (as mmseg): raw 0 -> 255 (ignore), raw ``v`` ->
    ``v - 1``; raw values above 150 are an error.

    Args:
        root: ``ADEChallengeData2016`` folder (or its parent).
        split: ``"train"`` or ``"val"``.
        transform: Optional ``transform(image, target)``.

    Shape:
        - image: ``(3, H, W)`` uint8; target: ``(H, W)`` int64

    Raises:
        FileNotFoundError: If the folders, or the mask of an image, are missing (names the layout).
        ValueError: On a corrupt image, a size mismatch or out-of-set mask values (on access).
    """

    name = "ade20k"
    class_names = ADE20K_CLASSES
    layout = _LAYOUT
    _mapping = LabelMapping.reduce_zero_label(150)

    def __init__(self, root=None, split: str = "train", transform: Callable | None = None):
        root = resolve_root(
            root, ["ADEChallengeData2016", "ade/ADEChallengeData2016"], "images", _LAYOUT
        )
        super().__init__(root, split, transform)

    def _list_samples(self, split: str) -> list[tuple[Path, Path]]:
        image_dir = require_dir(self.root / "images" / _FOLDERS[split], _LAYOUT)
        mask_dir = require_dir(self.root / "annotations" / _FOLDERS[split], _LAYOUT)
        samples = []
        for image_path in sorted(image_dir.glob("*.jpg")):
            mask_path = mask_dir / f"{image_path.stem}.png"
            if not mask_path.is_file():
                raise FileNotFoundError(
                    f"no mask for image {str(image_path)!r}: expected {str(mask_path)!r}; "
                    f"expected layout:\n{_LAYOUT}"
                )
            samples.append((image_path, mask_path))
        return samples

    def _mapping_for(self, mask_path: Path) -> LabelMapping:
        return self._mapping
