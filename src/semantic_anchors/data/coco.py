"""A scene split's instances as a COCO detection / instance-segmentation json.

Image ``i`` of the dataset has COCO id ``i + 1``; an annotation's ``category_id`` is the
instance's semantic label (``1 .. C-1``; the background, label 0, is no category), so the json,
the dataset's labels and :mod:`.targets` share one label space. Boxes ``[x, y, w, h]`` and areas
come from the visible masks (pixel-edge coordinates, as ``pycocotools.mask.toBbox``), masks are
RLE, ``iscrowd`` is 0, and instances below ``min_pixels`` are left out, as in the targets.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from .instances import MIN_INSTANCE_PIXELS
from .targets import instance_masks, masks_to_boxes

__all__ = ["coco_dict", "write_coco"]


def _mask_api():
    try:
        from pycocotools import mask
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            "COCO export needs pycocotools: pip install 'semantic-anchors[detection]' "
            "(or pip install pycocotools)",
            name="pycocotools",
        ) from err
    return mask


def coco_dict(dataset, min_pixels: int = MIN_INSTANCE_PIXELS) -> dict:
    """The COCO dict (``images``, ``annotations``, ``categories``, ``info``) of a dataset split.

    Args:
        dataset: A scene dataset built with ``with_instances=True``.
        min_pixels: Visible pixels an instance needs to be annotated.

    Raises:
        ValueError: If ``dataset`` has no instances.
        ModuleNotFoundError: If pycocotools is missing (names the extra).
    """
    instances = getattr(dataset, "instances", None)
    if instances is None:
        raise ValueError(
            f"`dataset` {getattr(dataset, 'name', type(dataset).__name__)!r} has no instances: "
            "build it with with_instances=True"
        )
    mask_api = _mask_api()
    height, width = instances.ids.shape[1:]
    images, annotations = [], []
    for index in range(len(instances)):
        image_id = index + 1
        images.append(
            {
                "id": image_id,
                "file_name": f"{dataset.name}-{dataset.split}-{index:06d}.png",
                "height": int(height),
                "width": int(width),
            }
        )
        masks, labels = instance_masks(*instances.item(index), min_pixels)  # (N, H, W), (N,)
        if not len(labels):
            continue
        boxes = masks_to_boxes(masks)  # (N, 4) x0, y0, x1, y1
        rles = mask_api.encode(np.asfortranarray(masks.permute(1, 2, 0).numpy().astype(np.uint8)))
        for mask, label, box, rle in zip(masks, labels, boxes.tolist(), rles, strict=True):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(label),
                    "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
                    "area": int(mask.sum()),
                    "iscrowd": 0,
                    "segmentation": {"size": list(rle["size"]), "counts": rle["counts"].decode()},
                }
            )
    categories = [
        {"id": label, "name": dataset.class_names[label], "supercategory": "object"}
        for label in range(1, dataset.num_classes)
    ]
    info = {
        "description": f"{dataset.name} {dataset.split}: {len(images)} images (semantic-anchors)"
    }
    return {"info": info, "images": images, "annotations": annotations, "categories": categories}


def write_coco(dataset, path: str | os.PathLike, min_pixels: int = MIN_INSTANCE_PIXELS) -> Path:
    """Write :func:`coco_dict` to ``path`` (atomically: a temporary file, then a rename).

    Returns:
        The path written.

    Raises:
        ValueError: If ``dataset`` has no instances.
        ModuleNotFoundError: If pycocotools is missing.
    """
    path = Path(path)
    content = json.dumps(coco_dict(dataset, min_pixels))
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as f:
            f.write(content)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
