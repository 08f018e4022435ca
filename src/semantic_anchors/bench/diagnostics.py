"""Representation diagnostics of a finished run, cached as ``RUN/diagnostics.pt``.

The checkpoint's model runs over (a capped part of) the validation split; its pre-classifier
features (``model.forward_features``: ``(B, D, h, w)`` with labels nearest-resized, or ``(B, D)``)
feed :class:`~semantic_anchors.metrics.FeatureStatistics` (class centres, compactness, centre
distances, Fisher ratio), and a uniform random sample of up to ``samples_per_class`` feature
vectors per class is kept for the embedding plot. The regularizer's own class vectors (SAR's
semantic anchors, CR's fixed anchors, prototypes, learned centres) are read from the checkpoint.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import torch

from semantic_anchors.functional import resize_labels
from semantic_anchors.metrics import FeatureStatistics

__all__ = [
    "DIAGNOSTICS_FILE",
    "REGULARIZER_VECTORS",
    "ClassSampler",
    "compute_diagnostics",
    "load_diagnostics",
    "read_diagnostics_file",
]

DIAGNOSTICS_FILE = "diagnostics.pt"
FORMAT_VERSION = 1
DEFAULT_SETTINGS = {"max_images": 1000, "samples_per_class": 200}

# regularizer name -> (state_dict entry under "regularizer.", what to call it in reports)
REGULARIZER_VECTORS = {
    "sar": ("semantic_anchors", "semantic anchors"),
    "cr": ("anchors", "fixed anchors"),
    "prototype": ("prototypes", "prototypes"),
    "center": ("centers", "learned centres"),
}


class ClassSampler:
    """A uniform random sample of at most ``per_class`` vectors of each class from a stream.

    Every vector seen gets a random key; each class keeps the ``per_class`` smallest keys, which
    is a uniform sample without replacement of everything seen so far, whatever the batching.
    """

    def __init__(self, num_classes: int, per_class: int, seed: int = 0) -> None:
        self.num_classes, self.per_class = num_classes, per_class
        self.generator = torch.Generator().manual_seed(seed)
        self.features: torch.Tensor | None = None  # (K, D)
        self.labels = torch.empty(0, dtype=torch.long)  # (K,)
        self.keys = torch.empty(0)  # (K,)

    def update(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Add ``(N, D)`` vectors with ``(N,)`` labels in ``[0, C)``."""
        feats = features.detach().float().cpu()  # (N, D)
        keys = torch.rand(len(labels), generator=self.generator)  # (N,)
        if self.features is not None:
            feats = torch.cat([self.features, feats])  # (K + N, D)
            labels = torch.cat([self.labels, labels.cpu()])
            keys = torch.cat([self.keys, keys])
        by_key = torch.argsort(keys)  # (K + N,)
        order = by_key[torch.argsort(labels[by_key], stable=True)]  # class-major, keys ascending
        sorted_labels = labels[order]
        counts = torch.bincount(sorted_labels, minlength=self.num_classes)  # (C,)
        starts = torch.cumsum(counts, 0) - counts  # (C,)
        rank = torch.arange(len(order)) - starts[sorted_labels]  # rank within its class
        keep = order[rank < self.per_class]
        self.features, self.labels, self.keys = feats[keep], labels[keep], keys[keep]

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The sampled ``(K, D)`` features and ``(K,)`` labels."""
        if self.features is None:
            return torch.empty(0, 0), self.labels
        return self.features, self.labels


def _class_vectors(state: dict, regularizer: str, num_classes: int) -> tuple[Any, str]:
    entry = REGULARIZER_VECTORS.get(str(regularizer).lower().replace("_", "-"))
    if entry is None or f"regularizer.{entry[0]}" not in state:
        return None, ""
    vectors = state[f"regularizer.{entry[0]}"].detach().double().clone()  # (C, D)
    if vectors.ndim != 2 or vectors.shape[0] != num_classes:
        return None, ""
    initialized = state.get("regularizer.initialized")
    if initialized is not None and initialized.shape == (num_classes,):
        vectors[~initialized.bool()] = float("nan")  # rows never set carry no information
    return vectors, entry[1]


def _flat(features: torch.Tensor, labels: torch.Tensor, ignore_index: int | None):
    if features.ndim == 4:  # (B, D, h, w)
        labels = resize_labels(labels, tuple(features.shape[-2:]))  # (B, h, w)
        features = features.permute(0, 2, 3, 1).reshape(-1, features.shape[1])  # (B*h*w, D)
    labels = labels.reshape(-1).long()  # (N,)
    if ignore_index is not None:
        keep = labels != ignore_index
        features, labels = features[keep], labels[keep]
    return features, labels


@torch.no_grad()
def compute_diagnostics(
    run_dir: str | Path,
    *,
    max_images: int = DEFAULT_SETTINGS["max_images"],
    samples_per_class: int = DEFAULT_SETTINGS["samples_per_class"],
    device: str | None = None,
) -> dict[str, Any]:
    """Diagnostics of ``RUN/checkpoints/last.ckpt`` on the first ``max_images`` validation images
    (on ``device``: default CUDA when available).

    Returns:
        A dict of plain values and tensors: ``centers`` ``(C, D)``, ``counts`` ``(C,)``,
        ``compactness`` ``(C,)`` and the scalars ``mean_compactness``, ``min_distance``,
        ``mean_distance``, ``fisher_ratio`` (see :mod:`semantic_anchors.metrics.representation`);
        ``samples`` ``(K, D)`` / ``sample_labels`` ``(K,)``; ``regularizer``,
        ``regularizer_vectors`` ``(C, D)`` or None (rows NaN where never initialised) and their
        ``regularizer_vectors_name``; ``class_names``, ``task``, ``num_images``, ``settings``.

    Raises:
        FileNotFoundError: no checkpoint in ``run_dir``.
        ValueError: the checkpoint does not fit the model its config describes.
    """
    from semantic_anchors.train.checkpoint import load_checkpoint
    from semantic_anchors.train.data import AnchorDataModule
    from semantic_anchors.train.module import AnchorModule
    from semantic_anchors.train.parts import uses_text_anchors

    run_dir = Path(run_dir)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    ckpt_file = run_dir / "checkpoints" / "last.ckpt"
    ckpt = load_checkpoint(ckpt_file)
    extra = ckpt["semantic_anchors"]
    config, data_info = copy.deepcopy(extra["config"]), extra["data_info"]
    config["data"]["num_workers"] = 0  # a few hundred images: worker start-up costs more
    with torch.random.fork_rng(devices=[]):
        text = ckpt["state_dict"].get("regularizer.anchors") if uses_text_anchors(config) else None
        module = AnchorModule(config, data_info, anchors=text)
        dm = AnchorDataModule(config["data"], int(config["seed"]))
    missing, unexpected = module.load_state_dict(ckpt["state_dict"], strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{ckpt_file} does not fit the model: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    model = module.model.to(device).eval()
    num_classes, ignore = int(data_info["num_classes"]), data_info.get("ignore_index", 255)
    stats = FeatureStatistics(num_classes, int(model.feat_dim), ignore_index=ignore).to(device)
    sampler = ClassSampler(num_classes, samples_per_class, seed=int(config["seed"]))
    seen = 0
    for images, labels in dm.val_dataloader():
        if seen >= max_images:
            break
        images, labels = images[: max_images - seen].to(device), labels[: max_images - seen]
        features = model.forward_features(images)  # (B, D, h, w) or (B, D)
        stats.update(features, labels.to(device))
        sampler.update(*_flat(features.cpu(), labels, ignore))
        seen += len(images)
    summary = stats.compute()
    samples, sample_labels = sampler.result()
    reg_name = config["regularizer"]["name"]
    vectors, vectors_name = _class_vectors(ckpt["state_dict"], reg_name, num_classes)
    return {
        "version": FORMAT_VERSION,
        "settings": {"max_images": max_images, "samples_per_class": samples_per_class},
        "checkpoint": _stamp(ckpt_file),
        "task": data_info["task"],
        "class_names": list(data_info["class_names"]),
        "num_images": seen,
        "step": int(ckpt.get("global_step", 0)),
        "centers": summary["centers"].cpu(),
        "counts": summary["counts"].cpu(),
        "compactness": summary["compactness"].cpu(),
        **{
            key: float(summary[key])
            for key in ("mean_compactness", "min_distance", "mean_distance", "fisher_ratio")
        },
        "samples": samples,
        "sample_labels": sample_labels,
        "regularizer": str(reg_name),
        "regularizer_vectors": vectors,
        "regularizer_vectors_name": vectors_name,
    }


def _stamp(path: Path) -> dict[str, int]:
    stat = path.stat()
    return {"mtime_ns": int(stat.st_mtime_ns), "size": int(stat.st_size)}


def _save(result: dict, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(result, tmp)
    os.replace(tmp, path)


# what the report and the plots read from a cached result
_REQUIRED_KEYS = ("centers", "samples", "sample_labels", "class_names", "regularizer")


def _rebuild_hint(checkpoint: Path) -> str:
    if checkpoint.is_file():
        return "delete it or pass --recompute to rebuild it from the checkpoint"
    return "delete it (the run has no checkpoint to rebuild it from)"


def read_diagnostics_file(path: Path, *, checkpoint: Path | None = None) -> dict[str, Any]:
    """Load a ``diagnostics.pt`` safely (tensors and plain values only).

    Raises:
        ValueError: the file cannot be read or does not hold a dict; the message names it.
    """
    checkpoint = checkpoint if checkpoint is not None else path.parent / "checkpoints/last.ckpt"
    try:
        cached = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a corrupt file
        lines = str(err).strip().splitlines()
        reason = lines[0].split(". ")[0][:200] if lines else type(err).__name__
        if "Weights only load failed" in reason:  # torch's advice to unpickle freely: not ours
            reason = "not a torch.save file of tensors and plain values"
        raise ValueError(
            f"{path} is not a readable diagnostics file ({reason}); {_rebuild_hint(checkpoint)}"
        ) from err
    if not isinstance(cached, dict):
        raise ValueError(
            f"{path} must hold a dict of diagnostics, got {type(cached).__name__}; "
            f"{_rebuild_hint(checkpoint)}"
        )
    return cached


def _check_cached(cached: dict, path: Path, checkpoint: Path) -> None:
    missing = [key for key in _REQUIRED_KEYS if key not in cached]
    if missing:
        raise ValueError(
            f"{path} is incomplete: expected the keys {list(_REQUIRED_KEYS)}, missing {missing}; "
            f"{_rebuild_hint(checkpoint)}"
        )
    centers = cached["centers"]
    if not isinstance(centers, torch.Tensor) or centers.ndim != 2:
        shape = tuple(centers.shape) if isinstance(centers, torch.Tensor) else type(centers)
        raise ValueError(
            f"{path}: 'centers' must be a (C, D) tensor, got {shape}; {_rebuild_hint(checkpoint)}"
        )


def load_diagnostics(
    run_dir: str | Path,
    *,
    recompute: bool = False,
    max_images: int = DEFAULT_SETTINGS["max_images"],
    samples_per_class: int = DEFAULT_SETTINGS["samples_per_class"],
    device: str | None = None,
) -> dict[str, Any] | None:
    """The cached ``RUN/diagnostics.pt``, recomputed when missing, older than the checkpoint, made
    with other settings, or ``recompute``; None for a run without checkpoint nor cache.

    Raises:
        ValueError: a corrupt or incomplete ``diagnostics.pt`` (names the file; delete it or
            pass ``recompute=True`` to rebuild it from the checkpoint), and as
            :func:`compute_diagnostics`.
    """
    run_dir = Path(run_dir)
    cache, ckpt = run_dir / DIAGNOSTICS_FILE, run_dir / "checkpoints" / "last.ckpt"
    settings = {"max_images": max_images, "samples_per_class": samples_per_class}
    if cache.is_file() and not recompute:
        cached = read_diagnostics_file(cache, checkpoint=ckpt)
        fresh = cached.get("version") == FORMAT_VERSION and (
            not ckpt.is_file()
            or (cached.get("checkpoint") == _stamp(ckpt) and cached.get("settings") == settings)
        )
        if fresh:
            _check_cached(cached, cache, ckpt)
            return cached
    if not ckpt.is_file():
        return None
    result = compute_diagnostics(
        run_dir, max_images=max_images, samples_per_class=samples_per_class, device=device
    )
    _save(result, cache)
    return result
