"""``synthlt``: procedurally generated long-tailed scene segmentation (the embedded default).

Each image shows a few objects on a noisy, low-saturation background. An object's class is the
pair (shape, texture) — e.g. ``disc-stripes`` or ``ring-checker`` — while its colour is a nuisance:
in the training split every class has a dominant colour it wears with probability ``color_bias``
(0.9), at validation colours are uniform (the paper's "red cars vs green cars" bias). Object
classes follow the exponential long-tail profile ``IF ** (-i / (K - 1))`` in train and are
balanced in val. Everything is generated in memory, vectorised, deterministically from ``seed``.
"""

from __future__ import annotations

import colorsys
from collections.abc import Callable
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import torch

from ..instances import MAX_INSTANCES_PER_IMAGE, SceneInstances, visible_slots
from ..longtail import split_total
from ..registry import register_dataset
from ._synthlt_paint import paint_background, shape_mask, texture_value
from .base import BaseDataset, cached_frequencies, count_classes

__all__ = [
    "SHAPES",
    "TEXTURES",
    "SynthLT",
    "SynthLTConfig",
    "generate_synthlt",
    "generate_synthlt_instances",
]

SHAPES = ("disc", "square", "triangle", "ring", "cross")
TEXTURES = ("solid", "stripes", "checker", "dots")
_SPLIT_CODE = {"train": 0, "val": 1}
_CHUNK = 128  # images rendered at once: bounds the (n, S, S) float temporaries


class SynthLTConfig(NamedTuple):
    """Everything that determines the generated data (hashable, so generation is cached)."""

    image_size: int = 64
    num_object_classes: int = 12
    imbalance_factor: float = 50.0
    objects_per_image: tuple[int, int] = (2, 4)
    radius_range: tuple[float, float] = (0.15, 0.25)  # fraction of image_size
    color_bias: float = 0.9
    num_colors: int = 12
    noise: float = 0.05  # std of the pixel noise, fraction of 255
    seed: int = 0


def object_class_attributes(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Shape and texture index of object class ``i`` (``0 .. k-1``): ``i % 5`` and ``i % 4``.

    5 and 4 are coprime, so the first 20 classes are distinct (shape, texture) pairs and every
    stretch of classes — head or tail — mixes all shapes and textures.
    """
    idx = np.arange(k)  # (K,)
    return idx % len(SHAPES), idx % len(TEXTURES)


def palette(num_colors: int) -> np.ndarray:
    """``num_colors`` saturated colours with evenly spaced hues, float ``(P, 3)`` in ``[0, 1]``."""
    return np.array([colorsys.hsv_to_rgb(i / num_colors, 0.8, 0.95) for i in range(num_colors)])


def _sample_objects(cfg: SynthLTConfig, split: str, num_images: int) -> dict[str, np.ndarray]:
    """Per-object attributes (all random draws happen here, so labels never depend on rendering)."""
    rng = np.random.default_rng([cfg.seed, _SPLIT_CODE[split], 0])
    k, size = cfg.num_object_classes, cfg.image_size
    lo, hi = cfg.objects_per_image
    per_image = rng.integers(lo, hi + 1, size=num_images)  # (N,)
    total = int(per_image.sum())
    if split == "train":
        weights = cfg.imbalance_factor ** (-np.arange(k) / max(k - 1, 1))  # (K,)
    else:
        weights = np.ones(k)  # balanced val
    labels = np.repeat(np.arange(k), split_total(total, weights))  # (M,)
    rng.shuffle(labels)
    bias = cfg.color_bias if split == "train" else 0.0
    dominant = rng.random(total) < bias  # (M,)
    colors = np.where(
        dominant, labels % cfg.num_colors, rng.integers(0, cfg.num_colors, size=total)
    )  # (M,)
    radius = rng.uniform(*cfg.radius_range, size=total) * size  # (M,) pixels
    margin = 0.6 * radius
    shape, texture = object_class_attributes(k)
    return {
        "image": np.repeat(np.arange(num_images), per_image),  # (M,)
        "slot": np.concatenate([np.arange(n) for n in per_image]) if total else np.zeros(0, int),
        "label": labels + 1,  # (M,) 0 is background
        "shape": shape[labels],
        "texture": texture[labels],
        "color": colors,
        "radius": radius,
        "cx": margin + rng.random(total) * (size - 2 * margin),  # (M,)
        "cy": margin + rng.random(total) * (size - 2 * margin),
        "angle": rng.uniform(0, 2 * np.pi, size=total),
        "phase": rng.random((total, 2)),  # (M, 2) texture offsets
        "brightness": rng.uniform(0.75, 1.0, size=total),
        "background": rng.random((num_images, 6)),  # (N, 6): grey, 3 tints, 2 gradients
    }


def _render_chunk(cfg, objs, first, n, rng, with_images, slots=None):
    """Paint the objects of images ``first .. first+n`` slot by slot (later slots occlude).

    Each object is rasterised on a ``P x P`` patch around its centre only, written into a canvas
    padded by ``pad`` so that patches never need clipping. ``slots``, an ``(n, S, S)`` uint8
    array, receives ``slot + 1`` of the object that wrote each label (0 = background).
    """
    size = cfg.image_size
    half = int(np.ceil(1.2 * cfg.radius_range[1] * size)) + 1
    offsets = np.arange(-half, half + 1)  # (P,)
    pad = half + 1
    side = size + 2 * pad
    label = np.zeros((n, side, side), dtype=np.uint8)  # (n, S + 2 pad, S + 2 pad)
    owner = None if slots is None else np.zeros_like(label)  # same canvas, slot + 1
    if with_images:
        paint_canvas = np.zeros((n, side, side, 3), dtype=np.float32)  # objects only
        colors = palette(cfg.num_colors).astype(np.float32)  # (num_colors, 3)
    in_chunk = (objs["image"] >= first) & (objs["image"] < first + n)
    for slot in range(cfg.objects_per_image[1]):
        sel = np.flatnonzero(in_chunk & (objs["slot"] == slot))
        if sel.size == 0:
            continue
        cx, cy = objs["cx"][sel].astype(np.float32), objs["cy"][sel].astype(np.float32)  # (m,)
        rows = np.floor(cy).astype(np.int64)[:, None] + offsets  # (m, P) image rows
        cols = np.floor(cx).astype(np.int64)[:, None] + offsets  # (m, P)
        dy = (rows + 0.5 - cy[:, None]).astype(np.float32)[:, :, None]  # (m, P, 1)
        dx = (cols + 0.5 - cx[:, None]).astype(np.float32)[:, None, :]  # (m, 1, P)
        angle = objs["angle"][sel].astype(np.float32)
        cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]  # (m, 1, 1)
        a = cos * dx + sin * dy  # (m, P, P) local pixels
        b = -sin * dx + cos * dy  # (m, P, P)
        r = objs["radius"][sel].astype(np.float32)[:, None, None]  # (m, 1, 1)
        shape, texture = objs["shape"][sel], objs["texture"][sel]
        inside = np.zeros(a.shape, dtype=bool)  # (m, P, P)
        for s in np.unique(shape):
            g = shape == s
            inside[g] = shape_mask(int(s), a[g] / r[g], b[g] / r[g])
        image_of = (objs["image"][sel] - first)[:, None, None]  # (m, 1, 1)
        # flat canvas index of every patch pixel: one int gather / scatter is far cheaper than
        # 3-array fancy indexing
        where = (
            (image_of * side + rows[:, :, None] + pad) * side + cols[:, None, :] + pad
        )  # (m, P, P)
        flat_label = label.reshape(-1)  # view
        flat_label[where] = np.where(
            inside, objs["label"][sel, None, None].astype(np.uint8), flat_label[where]
        )
        if owner is not None:
            flat_owner = owner.reshape(-1)  # view
            flat_owner[where] = np.where(inside, np.uint8(slot + 1), flat_owner[where])
        if with_images:
            shade = np.empty(a.shape, dtype=np.float32)  # (m, P, P)
            for t in np.unique(texture):
                g = texture == t
                shade[g] = texture_value(int(t), a[g], b[g], objs["phase"][sel][g])
            shade *= objs["brightness"][sel, None, None].astype(np.float32)
            paint = shade[..., None] * colors[objs["color"][sel]][:, None, None, :]  # (m, P, P, 3)
            flat_paint = paint_canvas.reshape(-1, 3)  # view, (n * side * side, 3)
            flat_paint[where] = np.where(inside[..., None], paint, flat_paint[where])
    label = np.ascontiguousarray(label[:, pad : pad + size, pad : pad + size])  # (n, S, S)
    if owner is not None:
        slots[...] = owner[:, pad : pad + size, pad : pad + size]  # (n, S, S)
    if not with_images:
        return label, None
    image = paint_background(objs["background"][first : first + n], size)  # (n, S, S, 3)
    painted = paint_canvas[:, pad : pad + size, pad : pad + size]  # (n, S, S, 3)
    np.copyto(image, painted, where=(label > 0)[..., None])
    noise = torch.randn(image.shape, generator=rng).numpy()  # (n, S, S, 3); torch's is ~3x faster
    image += np.float32(cfg.noise) * noise
    image *= 255.0
    image += 0.5
    image = np.clip(image, 0, 255, out=image).astype(np.uint8)  # (n, S, S, 3)
    return label, np.ascontiguousarray(image.transpose(0, 3, 1, 2))  # (n, 3, S, S)


@lru_cache(maxsize=4)
def generate_synthlt(cfg: SynthLTConfig, split: str, num_images: int, with_images: bool = True):
    """Generate one split.

    Args:
        cfg: The generation settings (see :class:`SynthLT`).
        split: ``"train"`` (long-tailed, colour-biased) or ``"val"`` (balanced, uniform colours).
        num_images: Number of images ``N``.
        with_images: ``False`` generates the labels only (identical to the full run's labels).

    Returns:
        ``(images, labels, objects)``: ``uint8`` ``(N, 3, S, S)`` (or ``None``), ``uint8``
        ``(N, S, S)`` and the per-object attribute arrays.
    """
    objs = _sample_objects(cfg, split, num_images)
    noise_seed = np.random.SeedSequence([cfg.seed, _SPLIT_CODE[split], 1]).generate_state(1)[0]
    noise_rng = torch.Generator().manual_seed(int(noise_seed))
    labels, images = [], []
    for first in range(0, num_images, _CHUNK):
        n = min(_CHUNK, num_images - first)
        lab, img = _render_chunk(cfg, objs, first, n, noise_rng, with_images)
        labels.append(lab)
        images.append(img)
    size = cfg.image_size
    labels = np.concatenate(labels) if labels else np.zeros((0, size, size), np.uint8)
    if with_images:
        images = np.concatenate(images) if num_images else np.zeros((0, 3, size, size), np.uint8)
    return (images if with_images else None), labels, objs


@lru_cache(maxsize=4)
def generate_synthlt_instances(cfg: SynthLTConfig, split: str, num_images: int) -> SceneInstances:
    """The instances of :func:`generate_synthlt`'s split: a label-only pass that records which
    object wrote each label (the objects are the same draws, so the labels are the same)."""
    objs = _sample_objects(cfg, split, num_images)
    slots = np.zeros((num_images, cfg.image_size, cfg.image_size), dtype=np.uint8)  # (N, S, S)
    for first in range(0, num_images, _CHUNK):
        n = min(_CHUNK, num_images - first)
        _render_chunk(cfg, objs, first, n, None, False, slots[first : first + n])
    return visible_slots(slots, objs["image"], objs["slot"], objs["label"])


@register_dataset("synthlt")
class SynthLT(BaseDataset):
    """Synthetic long-tailed scene segmentation with a per-class colour bias in train.

    Classes: ``0 = background`` and ``K`` object classes named ``"<shape>-<texture>"``; object
    class ``i`` (label ``i + 1``) has shape ``SHAPES[i % 5]`` and texture ``TEXTURES[i % 4]`` and
    appears ``IF ** (-i / (K - 1))`` times as often as class 1 in train.

    Args:
        root: Ignored (kept for the common signature).
        split: ``"train"`` or ``"val"``.
        transform: Optional ``transform(image, target)``.
        num_images: Images of this split (default: ``num_train_images`` / ``num_val_images``).
        num_train_images: Size of the training split (2000); also used by the val split to compute
            the training class frequencies.
        num_val_images: Size of the val split (500).
        image_size: Side ``S`` of the square images (64).
        num_object_classes: ``K`` in ``[2, 20]`` (12).
        imbalance_factor: Ratio of the most to the least frequent object class in train (50).
        objects_per_image: Inclusive range of objects per image ((2, 4)).
        radius_range: Object radius range as fractions of ``image_size`` ((0.15, 0.25)).
        color_bias: Probability that a training object wears its class's dominant colour (0.9);
            otherwise its colour is uniform over the palette. Val colours are always uniform.
        num_colors: Palette size (default ``K``: one dominant colour per class); class ``i``
            prefers colour ``i % num_colors``, so a smaller palette makes colour a partial cue.
        noise: Std of the Gaussian pixel noise as a fraction of 255 (0.05).
        seed: Seed; the same settings and seed give identical data.
        with_instances: Also find which object owns each pixel, as ``instances`` (``None``
            otherwise); images and labels are the same either way.

    Attributes:
        objects: Per-object attribute arrays (``image``, ``label``, ``shape``, ``texture``,
            ``color``, ``radius``, ...), e.g. to measure the colour bias.
        dominant_colors: ``(K,)`` palette index each object class prefers in train (``i % num_colors``).
        palette: ``(num_colors, 3)`` float RGB colours.
        instances: With ``with_instances``, a
            :class:`~semantic_anchors.data.instances.SceneInstances` (its classes are the
            objects' labels; ``instances.objects`` indexes the arrays of ``objects``).

    Shape:
        - image: ``(3, S, S)`` uint8; target: ``(S, S)`` int64 in ``[0, K]``

    Raises:
        ValueError: If an option is out of range.

    Example:
        >>> ds = SynthLT(split="val", num_images=4)
        >>> ds.num_classes, ds.class_names[1]
        (13, 'disc-solid')
    """

    name = "synthlt"
    task = "segmentation"
    mean = (0.5, 0.5, 0.5)
    std = (0.25, 0.25, 0.25)

    def __init__(
        self,
        root=None,
        split: str = "train",
        transform: Callable | None = None,
        num_images: int | None = None,
        num_train_images: int = 2000,
        num_val_images: int = 500,
        image_size: int = 64,
        num_object_classes: int = 12,
        imbalance_factor: float = 50.0,
        objects_per_image: tuple[int, int] = (2, 4),
        radius_range: tuple[float, float] = (0.15, 0.25),
        color_bias: float = 0.9,
        num_colors: int | None = None,
        noise: float = 0.05,
        seed: int = 0,
        with_instances: bool = False,
    ):
        super().__init__(split, transform)
        if num_images is not None:
            if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 0:
                raise ValueError(f"`num_images` must be an int >= 0, got {num_images!r}")
            num_train_images = num_images if split == "train" else num_train_images
            num_val_images = num_images if split == "val" else num_val_images
        for arg, value, low in (
            ("num_train_images", num_train_images, 0),
            ("num_val_images", num_val_images, 0),
            ("image_size", image_size, 16),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"`{arg}` must be an int >= {low}, got {value!r}")
        if not 2 <= num_object_classes <= len(SHAPES) * len(TEXTURES):
            raise ValueError(f"`num_object_classes` must lie in [2, 20], got {num_object_classes}")
        if not imbalance_factor >= 1:
            raise ValueError(f"`imbalance_factor` must be >= 1, got {imbalance_factor}")
        lo, hi = objects_per_image
        if not 1 <= lo <= hi or (with_instances and hi > MAX_INSTANCES_PER_IMAGE):
            raise ValueError(
                f"`objects_per_image` must be (low, high) with 1 <= low <= high (high <= "
                f"{MAX_INSTANCES_PER_IMAGE} with instances), got {objects_per_image}"
            )
        if not 0 < radius_range[0] <= radius_range[1] <= 0.5:
            raise ValueError(
                f"`radius_range` must satisfy 0 < low <= high <= 0.5, got {radius_range}"
            )
        num_colors = num_object_classes if num_colors is None else num_colors
        if (
            isinstance(num_colors, bool)
            or not isinstance(num_colors, int)
            or not 1 <= num_colors <= 36
        ):
            raise ValueError(f"`num_colors` must be an int in [1, 36], got {num_colors!r}")
        if not 0 <= color_bias <= 1:
            raise ValueError(f"`color_bias` must lie in [0, 1], got {color_bias}")
        if not noise >= 0:
            raise ValueError(f"`noise` must be >= 0, got {noise}")
        self.config = SynthLTConfig(
            image_size, num_object_classes, float(imbalance_factor), (int(lo), int(hi)),
            (float(radius_range[0]), float(radius_range[1])), float(color_bias), num_colors, float(noise), int(seed),
        )  # fmt: skip
        self.num_train_images = num_train_images
        n = num_train_images if split == "train" else num_val_images
        self.images, self.labels, self.objects = generate_synthlt(self.config, split, n)
        self.instances = (
            generate_synthlt_instances(self.config, split, n) if with_instances else None
        )
        shape, texture = object_class_attributes(num_object_classes)
        self.class_names = ["background"] + [
            f"{SHAPES[s]}-{TEXTURES[t]}" for s, t in zip(shape, texture, strict=True)
        ]
        self.dominant_colors = np.arange(num_object_classes) % num_colors
        self.palette = palette(num_colors)

    def __len__(self) -> int:
        return len(self.labels)

    def _load(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = torch.from_numpy(self.images[index])  # (3, S, S) uint8
        target = torch.from_numpy(self.labels[index].astype(np.int64))  # (S, S)
        return image, target

    def _train_frequencies(self) -> list[int]:
        def compute():
            if self.split == "train":
                labels = self.labels
            else:
                labels = generate_synthlt(self.config, "train", self.num_train_images, False)[1]
            return count_classes([labels], self.num_classes)

        return cached_frequencies(("synthlt", self.config, self.num_train_images), compute)
