"""CUB-200-2011 reader (birds, 200 classes, the official train / test split)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..io import read_image, require_dir, require_file
from ..registry import register_dataset
from .base import BaseDataset, as_image_tensor, cached_frequencies, count_classes, resolve_root

__all__ = ["CUB200"]

_LAYOUT = """\
<root>/CUB_200_2011/           (or that folder itself)
  images.txt               "<image id> <relative path>"   e.g. "1 001.Black_footed_Albatross/x.jpg"
  image_class_labels.txt   "<image id> <class id 1..200>"
  train_test_split.txt     "<image id> <1 = train, 0 = test>"
  classes.txt              "<class id> <class folder name>"
  images/<class folder>/<file>.jpg"""


def _read_table(path: Path) -> dict[int, str]:
    require_file(path, _LAYOUT)
    table = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or not parts[0].isdigit():
            raise ValueError(f"{str(path)!r} line {number}: expected '<id> <value>', got {line!r}")
        table[int(parts[0])] = parts[1].strip()
    return table


@register_dataset("cub200")
class CUB200(BaseDataset):
    """CUB-200-2011 classification: 5,994 train / 5,794 test images of 200 bird species.

    Class names are the folder names of ``classes.txt`` without the ``"001."`` prefix.

    Args:
        root: Folder holding ``CUB_200_2011/`` (or that folder).
        split: ``"train"``, ``"val"`` (= test) or ``"test"``.
        transform: Optional ``transform(image, target)``; images have different sizes, so use
            e.g. ``build_transforms("classification", split, crop_size=224,
            random_resized_crop=True)`` / ``resize=256`` for batching.

    Shape:
        - image: ``(3, H, W)`` uint8; target: ``int`` in ``[0, 200)``

    Raises:
        FileNotFoundError: If a text file or an image is missing (names the layout / file).
        ValueError: If the text files disagree or an image is corrupt (names the file).
    """

    name = "cub200"
    task = "classification"
    splits = ("train", "val", "test")

    def __init__(self, root=None, split: str = "train", transform: Callable | None = None):
        super().__init__(split, transform)
        self.root = resolve_root(root, ["CUB_200_2011"], "images.txt", _LAYOUT)
        require_dir(self.root / "images", _LAYOUT)
        classes = _read_table(self.root / "classes.txt")
        self.class_names = [classes[k].split(".", 1)[-1] for k in sorted(classes)]
        paths = _read_table(self.root / "images.txt")
        labels = _read_table(self.root / "image_class_labels.txt")
        is_train = _read_table(self.root / "train_test_split.txt")
        missing = sorted(set(paths) - set(labels) | set(paths) - set(is_train))
        if missing:
            raise ValueError(
                f"image ids {missing[:10]} of {str(self.root / 'images.txt')!r} have no class label "
                "or train/test flag in image_class_labels.txt / train_test_split.txt"
            )
        want_train = split == "train"
        ids = [i for i in sorted(paths) if (is_train[i].strip() == "1") == want_train]
        self.paths = [self.root / "images" / paths[i] for i in ids]
        self.targets: list[int] = [int(labels[i]) - 1 for i in ids]
        bad = sorted({t + 1 for t in self.targets if not 0 <= t < len(self.class_names)})
        if bad:
            raise ValueError(
                f"class ids {bad[:10]} in image_class_labels.txt are outside 1..{len(self.class_names)}"
            )
        self._all = (paths, labels, is_train)

    def __len__(self) -> int:
        return len(self.targets)

    def _load(self, index: int) -> tuple[torch.Tensor, int]:
        return as_image_tensor(read_image(self.paths[index], "RGB")), self.targets[index]

    def _train_frequencies(self) -> list[int]:
        def compute():
            _, labels, is_train = self._all
            train = [int(labels[i]) - 1 for i in sorted(labels) if is_train.get(i, "0") == "1"]
            return count_classes([np.asarray(train, dtype=np.int64)], self.num_classes)

        return cached_frequencies(("cub200", str(self.root.resolve())), compute)
