"""Instance targets in the formats of the ``transformers`` query-based models.

One label space everywhere: a target's ``class_labels`` are the dataset's **semantic labels**
(0 = background, object class ``i`` = label ``i + 1``), so a model with ``num_labels =
dataset.num_classes`` needs no index shift and its semantic output is scored by the existing
:class:`~semantic_anchors.metrics.SegmentationMetrics` as it is.

* Mask2Former (:func:`mask2former_target`): the background is one "stuff" segment of class 0
  (when the image has background pixels) besides one segment per object. Its semantic inference
  (``post_process_semantic_segmentation``) then yields every label ``0 .. C-1`` directly; were
  the background left out, every pixel would be forced into an object class.
* DETR (:func:`detr_target`): objects only, ``boxes`` ``(cx, cy, w, h)`` normalised by the image
  size; label 0 never occurs (the model's label-0 logit just learns to stay low).

Instances with fewer than ``min_pixels`` visible pixels are left out of both (see
:data:`~semantic_anchors.data.instances.MIN_INSTANCE_PIXELS`); their pixels are in no mask.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.data import Dataset

from .instances import MIN_INSTANCE_PIXELS

__all__ = [
    "InstanceTargets",
    "collate_instances",
    "detr_target",
    "instance_masks",
    "mask2former_target",
    "masks_to_boxes",
    "semantic_from_instances",
]

FORMATS = ("mask2former", "detr")


def _check_item(ids: torch.Tensor, classes: torch.Tensor) -> None:
    if not isinstance(ids, torch.Tensor) or ids.ndim != 2 or ids.is_floating_point():
        raise ValueError(f"`ids` must be an integer tensor (H, W), got {_shape(ids)}")
    if not isinstance(classes, torch.Tensor) or classes.ndim != 1 or classes.is_floating_point():
        raise ValueError(f"`classes` must be an integer tensor (n,), got {_shape(classes)}")


def _shape(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"Tensor(shape={tuple(value.shape)}, dtype={value.dtype})"
    return type(value).__name__


def instance_masks(
    ids: torch.Tensor, classes: torch.Tensor, min_pixels: int = MIN_INSTANCE_PIXELS
) -> tuple[torch.Tensor, torch.Tensor]:
    """The target instances of one image: masks and semantic labels, in drawing order.

    Id ``k`` (``1 .. n``) is instance ``k`` with label ``classes[k - 1]``; 0 (background) and
    values above ``n`` (255: ignored padding) belong to no instance. An instance with fewer than
    ``min_pixels`` pixels (e.g. cropped or occluded to a sliver) is dropped.

    Shape:
        - ids: ``(H, W)`` integer; classes: ``(n,)`` integer
        - output: masks ``(N, H, W)`` bool, labels ``(N,)`` int64 with ``N <= n``

    Raises:
        ValueError: If ``ids`` / ``classes`` are not integer tensors of those ranks.
    """
    _check_item(ids, classes)
    numbers = torch.arange(1, classes.numel() + 1, device=ids.device)  # (n,)
    masks = ids[None].long() == numbers[:, None, None]  # (n, H, W)
    keep = masks.flatten(1).sum(1) >= min_pixels  # (n,)
    return masks[keep], classes.to(ids.device, torch.long)[keep]


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Tight boxes ``(x0, y0, x1, y1)`` in pixel-edge coordinates: pixel ``(r, c)`` spans
    ``[c, c + 1] x [r, r + 1]``, so a one-pixel mask has width 1 (as COCO's ``toBbox``).

    Shape:
        - masks: ``(N, H, W)`` bool, none empty; output: ``(N, 4)`` float32
    """
    n, h, w = masks.shape
    if n == 0:
        return torch.zeros(0, 4, device=masks.device)
    cols = masks.any(1)  # (N, W)
    rows = masks.any(2)  # (N, H)
    col_index = torch.arange(w, device=masks.device)  # (W,)
    row_index = torch.arange(h, device=masks.device)  # (H,)
    x0 = torch.where(cols, col_index, w).amin(1)  # (N,)
    x1 = torch.where(cols, col_index, -1).amax(1) + 1
    y0 = torch.where(rows, row_index, h).amin(1)
    y1 = torch.where(rows, row_index, -1).amax(1) + 1
    return torch.stack([x0, y0, x1, y1], dim=1).float()  # (N, 4)


def mask2former_target(
    ids: torch.Tensor,
    classes: torch.Tensor,
    background: bool = True,
    min_pixels: int = MIN_INSTANCE_PIXELS,
) -> dict[str, torch.Tensor]:
    """``{"mask_labels": (N, H, W) float32, "class_labels": (N,) int64}`` for Mask2Former.

    With ``background`` the first segment is the background (label 0, every id-0 pixel) when
    there is any; then the objects (labels ``>= 1``). No segment gives ``(0, H, W)`` / ``(0,)``.

    Raises:
        ValueError: As :func:`instance_masks`.
    """
    masks, labels = instance_masks(ids, classes, min_pixels)  # (N, H, W), (N,)
    if background:
        stuff = ids == 0  # (H, W)
        if bool(stuff.any()):
            masks = torch.cat([stuff[None], masks])  # (N + 1, H, W)
            labels = torch.cat([labels.new_zeros(1), labels])
    return {"mask_labels": masks.float(), "class_labels": labels}


def detr_target(
    ids: torch.Tensor, classes: torch.Tensor, min_pixels: int = MIN_INSTANCE_PIXELS
) -> dict[str, torch.Tensor]:
    """``{"class_labels": (N,) int64, "boxes": (N, 4) float32}`` for the DETR family.

    Boxes are ``(cx, cy, w, h)`` divided by the image width / height (in ``[0, 1]``), from the
    visible masks (:func:`masks_to_boxes`). No object gives ``(0,)`` / ``(0, 4)``.

    Raises:
        ValueError: As :func:`instance_masks`.
    """
    masks, labels = instance_masks(ids, classes, min_pixels)  # (N, H, W), (N,)
    h, w = ids.shape
    x0, y0, x1, y1 = masks_to_boxes(masks).unbind(1)  # (N,) each
    boxes = torch.stack([(x0 + x1) / (2 * w), (y0 + y1) / (2 * h), (x1 - x0) / w, (y1 - y0) / h], 1)
    return {"class_labels": labels, "boxes": boxes.reshape(-1, 4)}  # (N, 4)


def semantic_from_instances(
    ids: torch.Tensor, classes: torch.Tensor, ignore_index: int = 255
) -> torch.Tensor:
    """The semantic label map of an id map: id 0 -> 0, id ``k`` -> ``classes[k - 1]``, larger
    ids (padding) -> ``ignore_index``. Every instance counts here, small or not.

    Shape:
        - ids: ``(H, W)``; classes: ``(n,)``; output: ``(H, W)`` int64

    Raises:
        ValueError: As :func:`instance_masks`.
    """
    _check_item(ids, classes)
    lut = torch.full((256,), ignore_index, dtype=torch.long, device=ids.device)  # (256,)
    lut[0] = 0
    lut[1 : 1 + classes.numel()] = classes.to(ids.device, torch.long)
    return lut[ids.long().clamp(0, 255)]  # (H, W)


class InstanceTargets(Dataset):
    """A scene dataset's items with instance targets: ``(image, target dict)``.

    ``target`` holds the keys of :func:`mask2former_target` (``format="mask2former"``) or of
    :func:`detr_target` (``"detr"``), and ``"semantic"``, the ``(H, W)`` int64 semantic labels
    (for the segmentation metrics; 255 where a transform padded).

    Args:
        dataset: A scene dataset built with ``with_instances=True`` (``fashion-scenes-lt``,
            ``synthlt``). Its own ``transform`` is not used.
        format: ``"mask2former"`` or ``"detr"``.
        transform: Optional ``transform(image, ids) -> (image, ids)``, e.g.
            ``build_transforms("segmentation", ...)``: the uint8 id map goes through it as the
            mask does (nearest resizing, 255 padding), so geometry stays consistent; targets are
            made afterwards, so the ``min_pixels`` rule applies to what is left in the crop.
        background: Mask2Former only: the background as a class-0 segment (True).
        min_pixels: Visible pixels an instance needs (:data:`MIN_INSTANCE_PIXELS`).

    Raises:
        ValueError: If ``dataset`` has no instances or ``format`` / ``transform`` is invalid.
    """

    def __init__(
        self,
        dataset,
        format: str = "mask2former",
        transform: Callable | None = None,
        background: bool = True,
        min_pixels: int = MIN_INSTANCE_PIXELS,
    ):
        if getattr(dataset, "instances", None) is None:
            raise ValueError(
                f"`dataset` {getattr(dataset, 'name', type(dataset).__name__)!r} has no "
                "instances: build it with with_instances=True"
            )
        if format not in FORMATS:
            raise ValueError(f"`format` must be one of {list(FORMATS)}, got {format!r}")
        if transform is not None and not callable(transform):
            raise ValueError(f"`transform` must be callable or None, got {_shape(transform)}")
        self.dataset, self.format, self.transform = dataset, format, transform
        self.background, self.min_pixels = bool(background), int(min_pixels)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        index %= len(self)
        image, _ = self.dataset._load(index)  # (C, H, W) uint8
        ids, classes = self.dataset.instances.item(index)  # (H, W) uint8, (n,) int64
        if self.transform is not None:
            image, ids = self.transform(image, ids)
        if self.format == "mask2former":
            target = mask2former_target(ids, classes, self.background, self.min_pixels)
        else:
            target = detr_target(ids, classes, self.min_pixels)
        target["semantic"] = semantic_from_instances(ids, classes, self.dataset.ignore_index)
        return image, target


def collate_instances(batch) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """Stack the images of :class:`InstanceTargets` items, keep the targets as a list (their
    instance counts differ): pass ``targets`` as the models' ``labels`` / ``mask_labels``.

    Shape:
        - output: images ``(B, C, H, W)``, ``B`` target dicts
    """
    images, targets = zip(*batch, strict=True)
    return torch.stack(images), list(targets)
