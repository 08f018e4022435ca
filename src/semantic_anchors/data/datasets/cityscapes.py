"""Cityscapes (fine annotations) reader: 19 training classes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..io import LabelMapping, require_dir
from ..registry import register_dataset
from .base import resolve_root
from .folder import SegmentationFolderDataset

__all__ = ["CITYSCAPES_CLASSES", "CITYSCAPES_ID_TO_TRAIN_ID", "Cityscapes"]

CITYSCAPES_CLASSES = [
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
]  # fmt: skip

# cityscapesScripts labels.py: label id -> train id for the 19 evaluated classes; all else ignored
CITYSCAPES_ID_TO_TRAIN_ID = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
    26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip

_LAYOUT = """\
<root>/                                   (or <root>/cityscapes/)
  leftImg8bit/{train,val,test}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
  gtFine/{train,val,test}/<city>/<city>_<seq>_<frame>_gtFine_labelTrainIds.png
      (or only ..._gtFine_labelIds.png: the 34 label ids are then mapped to the 19 train ids)"""

_TRAIN_IDS = LabelMapping.identity(19)
_LABEL_IDS = LabelMapping(
    {i: CITYSCAPES_ID_TO_TRAIN_ID.get(i, 255) for i in range(34)} | {255: 255},
    description="Cityscapes label ids 0..33 (or 255)",
)


@register_dataset("cityscapes")
class Cityscapes(SegmentationFolderDataset):
    """Cityscapes fine segmentation, 19 classes (train 2975 / val 500 / test 1525 images).

    Uses ``*_gtFine_labelTrainIds.png`` (values 0-18, 255) when present; when only
    ``*_gtFine_labelIds.png`` exist, maps the 34 ids to the 19 train ids itself (others -> 255).

    Args:
        root: Folder holding ``leftImg8bit/`` and ``gtFine/`` (or its parent with ``cityscapes/``).
        split: ``"train"``, ``"val"`` or ``"test"``.
        transform: Optional ``transform(image, target)``.

    Shape:
        - image: ``(3, 1024, 2048)`` uint8; target: ``(1024, 2048)`` int64

    Raises:
        FileNotFoundError: If the folders, or the mask of an image, are missing (names the layout).
        ValueError: On a corrupt image, a size mismatch or out-of-set mask values (on access).
    """

    name = "cityscapes"
    splits = ("train", "val", "test")
    class_names = CITYSCAPES_CLASSES
    layout = _LAYOUT

    def __init__(self, root=None, split: str = "train", transform: Callable | None = None):
        root = resolve_root(root, ["cityscapes", "Cityscapes"], "leftImg8bit", _LAYOUT)
        super().__init__(root, split, transform)

    def _list_samples(self, split: str) -> list[tuple[Path, Path]]:
        image_dir = require_dir(self.root / "leftImg8bit" / split, _LAYOUT)
        mask_dir = require_dir(self.root / "gtFine" / split, _LAYOUT)
        samples = []
        for image_path in sorted(image_dir.glob("*/*_leftImg8bit.png")):
            stem = image_path.name[: -len("_leftImg8bit.png")]
            city_dir = mask_dir / image_path.parent.name
            train_ids = city_dir / f"{stem}_gtFine_labelTrainIds.png"
            label_ids = city_dir / f"{stem}_gtFine_labelIds.png"
            if train_ids.is_file():
                samples.append((image_path, train_ids))
            elif label_ids.is_file():
                samples.append((image_path, label_ids))
            else:
                raise FileNotFoundError(
                    f"no mask for image {str(image_path)!r}: expected {str(train_ids)!r} or "
                    f"{str(label_ids)!r}; expected layout:\n{_LAYOUT}"
                )
        return samples

    def _mapping_for(self, mask_path: Path) -> LabelMapping:
        return _TRAIN_IDS if mask_path.name.endswith("_labelTrainIds.png") else _LABEL_IDS
