"""Per-object instances of the generated scene datasets (``fashion-scenes-lt``, ``synthlt``).

A generator that composes a scene slot by slot (later slots drawn on top) knows which object
every labelled pixel came from. :class:`SceneInstances` stores that compactly: one ``uint8``
instance-id map per image (0 = background, ``k`` = the image's ``k``-th *visible* object in
drawing order) and one semantic label per instance. An instance's mask is exactly the set of
pixels whose semantic label it wrote, so mapping every id to its class reproduces the semantic
label map bit for bit. Objects hidden entirely by later ones own no pixel and get no id.

Which instances count as targets is decided when targets are made (:mod:`.targets`, :mod:`.coco`):
an instance with fewer than ``min_pixels`` visible pixels (:data:`MIN_INSTANCE_PIXELS`, 16) is
dropped there, as a sliver left by occlusion is no object a detector should be asked to find.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "MAX_INSTANCES_PER_IMAGE",
    "MIN_INSTANCE_PIXELS",
    "NO_SEGMENT_ID",
    "InstanceMaps",
    "SceneInstances",
    "visible_slots",
]

MIN_INSTANCE_PIXELS = 16
"""Visible pixels an instance needs to be a target (a 4 x 4 patch); smaller ones are dropped."""
MAX_INSTANCES_PER_IMAGE = 254
"""Ids are ``uint8`` and 255 is left free for ignored pixels (the transforms' padding)."""
NO_SEGMENT_ID = 255
"""The id of pixels in no segment: the transforms' padding, and in :class:`InstanceMaps` the
pixels of an instance too small to be one."""
_CHUNK = 256  # images per bincount: bounds the int64 temporaries to 256 * H * W


@dataclass(frozen=True)
class SceneInstances:
    """The instances of one generated split.

    Attributes:
        ids: ``(N, H, W)`` uint8 instance-id map: 0 = no object, ``k`` = the ``k``-th visible
            object of the image in drawing order.
        classes: ``(M,)`` int64 semantic label (the dataset's labels, ``1 .. K``) of every visible
            instance, image by image: image ``i`` owns ``classes[offsets[i]:offsets[i + 1]]``.
        offsets: ``(N + 1,)`` int64.
        pixels: ``(M,)`` int64 visible pixels of every instance.
        objects: ``(M,)`` int64 index of the instance in the generator's object list.
        occluded: Objects drawn but hidden entirely (no id, not in ``classes``).

    Shape:
        - ids: ``(N, H, W)``; classes, pixels, objects: ``(M,)``; offsets: ``(N + 1,)``
    """

    ids: np.ndarray
    classes: np.ndarray
    offsets: np.ndarray
    pixels: np.ndarray
    objects: np.ndarray
    occluded: int

    def __len__(self) -> int:
        return len(self.ids)

    def item(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ids (H, W) uint8, classes (n,) int64)`` of image ``index``: id ``k`` has class ``classes[k - 1]``."""
        lo, hi = int(self.offsets[index]), int(self.offsets[index + 1])
        ids = torch.from_numpy(self.ids[index].copy())  # (H, W)
        return ids, torch.from_numpy(self.classes[lo:hi].copy())  # (n,)

    def kept(self, min_pixels: int = MIN_INSTANCE_PIXELS) -> np.ndarray:
        """``(M,)`` bool: the instances that are targets under the ``min_pixels`` rule."""
        return self.pixels >= min_pixels

    def class_counts(self, num_classes: int, min_pixels: int = MIN_INSTANCE_PIXELS) -> list[int]:
        """Target instances per semantic label ``0 .. num_classes - 1`` (label 0 is always 0)."""
        counts = np.bincount(self.classes[self.kept(min_pixels)], minlength=num_classes)
        return counts[:num_classes].tolist()

    def semantic(self) -> np.ndarray:
        """The semantic label map these instances describe, ``(N, H, W)`` uint8."""
        out = np.zeros(self.ids.shape, dtype=np.uint8)  # (N, H, W)
        for i in range(len(self)):
            lut = np.zeros(256, dtype=np.uint8)
            classes = self.classes[self.offsets[i] : self.offsets[i + 1]]
            lut[1 : 1 + classes.size] = classes
            out[i] = lut[self.ids[i]]
        return out


def visible_slots(
    slots: np.ndarray, image_of: np.ndarray, slot_of: np.ndarray, labels: np.ndarray
) -> SceneInstances:
    """Instances from a composed split's slot map.

    Args:
        slots: ``(N, H, W)`` uint8, ``slot + 1`` of the object that wrote each pixel's label
            (0 = background), as the generator's slot loop leaves it.
        image_of, slot_of: ``(M,)`` image and slot of every drawn object (one object per slot
            of an image).
        labels: ``(M,)`` semantic label of every drawn object (``>= 1``).

    Returns:
        The visible objects, renumbered ``1 .. n`` per image in drawing order.

    Raises:
        ValueError: If an image has more than :data:`MAX_INSTANCES_PER_IMAGE` objects.
    """
    num_images, area = len(slots), slots.shape[1] * slots.shape[2]
    width = int(slot_of.max()) + 2 if slot_of.size else 1  # slot values 0 .. max + 1
    if width - 1 > MAX_INSTANCES_PER_IMAGE:
        raise ValueError(
            f"instances: at most {MAX_INSTANCES_PER_IMAGE} objects per image, got {width - 1}"
        )
    counts = np.zeros((num_images, width), dtype=np.int64)  # (N, slots + 1)
    for start in range(0, num_images, _CHUNK):
        block = slots[start : start + _CHUNK].reshape(-1, area)  # (n, H * W)
        n = len(block)
        flat = (np.arange(n)[:, None] * width + block).ravel()  # (n * H * W,)
        counts[start : start + n] = np.bincount(flat, minlength=n * width).reshape(n, width)
    order = np.lexsort((slot_of, image_of))  # drawing order, image by image
    image_of, slot_of, labels = image_of[order], slot_of[order], labels[order]
    pixels = counts[image_of, slot_of + 1]  # (M,)
    visible = pixels > 0
    per_image = np.bincount(image_of[visible], minlength=num_images)  # (N,)
    offsets = np.concatenate([[0], np.cumsum(per_image)]).astype(np.int64)  # (N + 1,)
    lut = np.zeros((num_images, width), dtype=np.uint8)  # slot + 1 -> id
    rank = np.arange(int(visible.sum())) - offsets[image_of[visible]] + 1  # (M_visible,)
    lut[image_of[visible], slot_of[visible] + 1] = rank
    ids = np.empty_like(slots)  # (N, H, W)
    for start in range(0, num_images, _CHUNK):
        block = slots[start : start + _CHUNK].reshape(-1, area).astype(np.int64)
        ids[start : start + len(block)] = np.take_along_axis(
            lut[start : start + len(block)], block, axis=1
        ).reshape(-1, *slots.shape[1:])
    return SceneInstances(
        ids=ids,
        classes=labels[visible].astype(np.int64),
        offsets=offsets,
        pixels=pixels[visible].astype(np.int64),
        objects=order[visible].astype(np.int64),
        occluded=int((~visible).sum()),
    )


class InstanceMaps(torch.utils.data.Dataset):
    """A generated scene dataset whose targets are ``(2, H, W)`` label maps: the semantic
    labels and the instance ids, for models that train on segments (Mask2Former).

    Id ``k`` is the ``k``-th visible object of the image; an instance below ``min_pixels`` gets
    id :data:`NO_SEGMENT_ID` (255, in no segment: its pixels keep their semantic label but train no mask), 0 is no
    object. Everything else (``task``, ``class_names``, ``class_frequencies`` ...) is the
    wrapped dataset's, so metrics and head / body / tail groups are unchanged.

    Args:
        dataset: a dataset built with ``with_instances=True`` (``fashion-scenes-lt``,
            ``synthlt``).
        min_pixels: visible pixels an instance needs to be a segment (:data:`MIN_INSTANCE_PIXELS`).

    Raises:
        ValueError: ``dataset`` has no instances.
    """

    def __init__(self, dataset, min_pixels: int = MIN_INSTANCE_PIXELS) -> None:
        if getattr(dataset, "instances", None) is None:
            raise ValueError(
                f"data.instances needs a dataset generated with instances (fashion-scenes-lt, "
                f"synthlt); {getattr(dataset, 'name', type(dataset).__name__)!r} has none"
            )
        self.dataset, self.min_pixels = dataset, int(min_pixels)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, semantic = self.dataset[index]  # (C, H, W), (H, W)
        instances = self.dataset.instances
        ids, _ = instances.item(index)  # (H, W) uint8
        lo = int(instances.offsets[index])
        small = np.flatnonzero(
            instances.pixels[lo : int(instances.offsets[index + 1])] < self.min_pixels
        )
        ids = ids.long()
        if small.size:  # ids of the image's too-small instances (1-based)
            ids[torch.isin(ids, torch.from_numpy(small + 1))] = NO_SEGMENT_ID
        return image, torch.stack([semantic.long(), ids])  # (2, H, W)

    def __getattr__(self, name: str):
        if name in ("dataset", "min_pixels") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.dataset, name)
