"""``semantic-anchors predict``: a trained model on new images, from a run, an export or ONNX.

A *source* is a run folder (or one of its ``.ckpt`` files), a file of ``semantic-anchors export``
(``--format torch``) or an ``.onnx`` file (``--format onnx``, run by onnxruntime on the CPU).
Every source carries the run's inference settings
(:mod:`semantic_anchors.train.inference_settings`): an image is normalised (and rescaled or
cropped) by the run's evaluation transform and predicted in the run's ``eval.mode`` (``whole`` or
``slide``). A run folder predicts exactly as ``semantic-anchors eval`` evaluates (its calibration
and ``eval.anchor_fusion`` included); an exported file or an ONNX file holds the plain model.

Segmentation logits are computed at the transformed resolution and resized (bilinearly) to the
image's own size before the argmax, so every output has the size of its input image.

The outputs, in ``--out`` (written as :mod:`semantic_anchors.train.predict_io` says: a folder
named ``--out`` is complete, its manifest ``predictions.json`` is written last):

* segmentation: ``labels/NAME.png`` (class ids; a palette PNG, 16-bit grey above 256 classes),
  ``overlays/NAME.png`` (the image blended half and half with the class colours) and with
  ``probs=True`` ``probs/NAME.npy`` (the softmax, float16, ``(K, H, W)``);
* classification: ``predictions.csv``, one row per image and rank: ``image, rank, class_id,
  class_name, probability`` (the softmax of the ``topk`` best classes).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from semantic_anchors.inference import predict_logits
from semantic_anchors.train.inference_settings import (
    check_settings,
    image_transform,
    inference_settings,
)
from semantic_anchors.train.predict_io import (
    OutputFolder,
    image_channels,
    list_images,
    palette,
    read_image,
    write_label_png,
    write_overlay,
)

__all__ = ["Predictor", "load_predictor", "predict"]


@dataclass
class Predictor:
    """A model ready for new images: its forward in the run's inference mode and its transform.

    Attributes:
        model: the module (a run's training module, an exported model) or
            :class:`~semantic_anchors.models.io.onnx.OnnxModel`.
        settings: the inference settings (task, classes, normalisation, transform, eval mode).
        kind: ``"run"``, ``"exported"`` or ``"onnx"``.
        source: where it was loaded from.
        device: where the images go (``cpu`` for ONNX).
    """

    model: Callable[[torch.Tensor], torch.Tensor]
    settings: dict[str, Any]
    kind: str
    source: Path
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def __post_init__(self) -> None:
        self.transform = image_transform(self.settings)

    @property
    def task(self) -> str:
        return self.settings["task"]

    @property
    def num_classes(self) -> int:
        return int(self.settings["num_classes"])

    @property
    def in_channels(self) -> int:
        return int(self.settings["in_channels"])

    @property
    def class_names(self) -> list[str]:
        names = list(self.settings.get("class_names") or [])
        return (
            names if len(names) == self.num_classes else [str(i) for i in range(self.num_classes)]
        )

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Logits of transformed images, in the run's eval mode.

        Shape:
            images ``(B, C, h, w)`` float -> ``(B, K, h, w)`` or ``(B, K)``, float32 on the CPU.
        """
        images = images.to(self.device)
        if self.kind == "run":  # the training module's forward: eval mode, calibration, fusion
            return self.model(images).float().cpu()
        ev = self.settings["eval"]
        return predict_logits(
            self.model, images, ev["mode"], num_classes=self.num_classes,
            crop_size=ev.get("crop_size"), stride=ev.get("stride"),
        ).float().cpu()  # fmt: skip

    def predict(self, images: list[torch.Tensor]) -> list[torch.Tensor]:
        """Logits of raw images, one batch per run of images of the same transformed size.

        Shape:
            images: each ``(C, H, W)`` uint8 -> ``(K, H, W)`` (segmentation, at the image's size)
            or ``(K,)`` float32.
        """
        inputs = [self.transform(image) for image in images]  # each (C, h, w) float32
        out: list[torch.Tensor] = []
        start = 0
        while start < len(inputs):
            end = start + 1
            while end < len(inputs) and inputs[end].shape == inputs[start].shape:
                end += 1
            logits = self.logits(torch.stack(inputs[start:end]))  # (b, K, h, w) or (b, K)
            for image, item in zip(images[start:end], logits, strict=True):
                if self.task == "segmentation" and item.shape[-2:] != image.shape[-2:]:
                    item = F.interpolate(
                        item[None], size=image.shape[-2:], mode="bilinear", align_corners=False
                    )[0]  # (K, H, W)
                out.append(item)
            start = end
        return out


def _run_predictor(ckpt: dict, ckpt_file: Path, device: torch.device) -> Predictor:
    from semantic_anchors.train.config import load_config
    from semantic_anchors.train.module import AnchorModule
    from semantic_anchors.train.parts import uses_text_anchors

    extra = ckpt["semantic_anchors"]
    config, info, state = load_config(extra["config"]), extra["data_info"], ckpt["state_dict"]
    text = state.get("regularizer.anchors") if uses_text_anchors(config) else None
    module = AnchorModule(config, info, anchors=text)
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{ckpt_file} does not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    module.eval().to(device)
    return Predictor(module, inference_settings(config, info), "run", ckpt_file, device)


def load_predictor(source: str | Path, device: str | torch.device = "cpu") -> Predictor:
    """The predictor of a run folder, a ``.ckpt`` file, an exported file or an ``.onnx`` file.

    Raises:
        FileNotFoundError: nothing at ``source``, or a run folder without a checkpoint.
        ValueError: a file of none of these kinds, one without inference settings (exported
            before they were stored), or ``device`` other than the CPU for an ONNX file.
        ModuleNotFoundError: an ONNX file without the ``onnx`` extra.

    Example:
        >>> import tempfile, torch
        >>> from semantic_anchors.models import create_model, save_exported
        >>> settings = {"task": "segmentation", "num_classes": 3, "class_names": ["a", "b", "c"],
        ...             "in_channels": 3, "mean": [0.5] * 3, "std": [0.25] * 3,
        ...             "transforms": {"base_size": None},
        ...             "eval": {"mode": "whole", "crop_size": None, "stride": None}}
        >>> file = save_exported(create_model("fcn_small", num_classes=3),
        ...                      tempfile.mkdtemp() + "/m.pt", name="fcn_small", options={},
        ...                      num_classes=3, inference=settings)
        >>> predictor = load_predictor(file)
        >>> image = torch.randint(0, 256, (3, 40, 56), dtype=torch.uint8)  # (C, H, W) uint8
        >>> [tuple(logits.shape) for logits in predictor.predict([image])]
        [(3, 40, 56)]
    """
    from semantic_anchors.train.checkpoint import describe_skipped, load_checkpoint, newest_readable

    path, device = Path(source), torch.device(device)
    if path.is_dir():
        ckpt_file, ckpt, skipped = newest_readable(path / "checkpoints")
        if skipped:
            print(f"predict {path}: {describe_skipped(skipped, ckpt_file)}", file=sys.stderr)
        return _run_predictor(ckpt, ckpt_file, device)
    if not path.is_file():
        raise FileNotFoundError(f"no run folder, exported model or ONNX file at {path}")
    if path.suffix == ".ckpt":
        return _run_predictor(load_checkpoint(path), path, device)
    if path.suffix == ".onnx":
        from semantic_anchors.models.io.onnx import OnnxModel

        if device.type != "cpu":
            raise ValueError(f"{path}: ONNX models run on the CPU here, got device {device}")
        model = OnnxModel(path)
        return Predictor(model, check_settings(model.metadata, str(path)), "onnx", path, device)
    from semantic_anchors.models.io import load_exported

    model = load_exported(path)
    settings = check_settings(model.inference, str(path))
    return Predictor(model.to(device), settings, "exported", path, device)


def _progress(total: int, show: bool):
    """A rich progress bar on stderr (nothing without rich, or when not shown)."""
    if show:
        try:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

            return Progress(
                "[bold]predict", BarColumn(), MofNCompleteColumn(), "images",
                TimeElapsedColumn(), console=Console(stderr=True), transient=True,
            )  # fmt: skip
        except ModuleNotFoundError:
            pass
    return None


def predict(
    source: str | Path,
    inputs: list[str | Path],
    out: str | Path,
    *,
    batch_size: int = 8,
    topk: int = 5,
    probs: bool = False,
    device: str = "cpu",
    progress: bool | None = None,
) -> dict[str, Any]:
    """Predict every image of ``inputs`` with ``source`` into the folder ``out``.

    The inputs and the output folder are checked before the model is loaded, every image's header
    before the first prediction; any error leaves no folder named ``out`` (see the module
    docstring for the files).

    Args:
        source: a run folder, ``.ckpt``, exported file or ``.onnx`` file.
        inputs: image files and folders of images.
        out: the output folder (new, or an empty one).
        batch_size: images per forward pass (images of one size share a batch).
        topk: classification: the best classes written per image (at most all classes).
        probs: segmentation: also write the per-class probabilities.
        device: where a PyTorch model runs (``cpu``, ``cuda``, ...).
        progress: show a progress bar on stderr (default: when stderr is a terminal).

    Returns:
        The manifest, as written to ``out/predictions.json``.

    Raises:
        FileNotFoundError: a missing input or source.
        FileExistsError: ``out`` exists and is not empty.
        ValueError: a bad input (a folder without images, an unreadable image, one with the wrong
            number of channels for the model, ...), a bad source, or a bad ``batch_size`` /
            ``topk``; each names the file or the argument.
    """
    if batch_size < 1 or topk < 1:
        raise ValueError(f"--batch-size and --topk must be >= 1, got {batch_size} and {topk}")
    images = list_images(inputs)
    folder = OutputFolder(out)
    predictor = load_predictor(source, device)
    for path in images:
        image_channels(path, predictor.in_channels)
    k = min(topk, predictor.num_classes)
    colours = palette(predictor.num_classes)
    entries: list[dict[str, Any]] = []
    rows: list[list[Any]] = []
    bar = _progress(len(images), sys.stderr.isatty() if progress is None else progress)
    with folder:
        task = bar.add_task("predict", total=len(images)) if bar is not None else None
        if bar is not None:
            bar.start()
        try:
            for start in range(0, len(images), batch_size):
                paths = images[start : start + batch_size]
                raw = [read_image(p, predictor.in_channels) for p in paths]  # each (C, H, W)
                for path, image, logits in zip(paths, raw, predictor.predict(raw), strict=True):
                    if predictor.task == "segmentation":
                        entries.append(
                            _write_segmentation(folder, path, image, logits, colours, probs)
                        )
                    else:
                        rows += _classification_rows(path, logits, k, predictor.class_names)
                        entries.append({"input": str(path)})
                if bar is not None:
                    bar.advance(task, len(paths))
        finally:
            if bar is not None:
                bar.stop()
        manifest: dict[str, Any] = {
            "source": str(predictor.source), "source_kind": predictor.kind,
            "task": predictor.task, "num_classes": predictor.num_classes,
            "class_names": predictor.class_names, "eval": predictor.settings["eval"],
        }  # fmt: skip
        if predictor.task == "segmentation":
            manifest["palette"] = ["#{:02x}{:02x}{:02x}".format(*c) for c in colours.tolist()]
        else:
            header = ["image", "rank", "class_id", "class_name", "probability"]
            folder.write_csv("predictions.csv", header, rows)
            manifest.update(predictions="predictions.csv", topk=k)
        manifest["images"] = entries
        folder.finish(manifest)
    return manifest


def _write_segmentation(folder, path: Path, image, logits, colours, probs: bool) -> dict:
    labels = logits.argmax(0).numpy()  # (H, W)
    entry = {"input": str(path), "label": f"labels/{path.stem}.png",
             "overlay": f"overlays/{path.stem}.png"}  # fmt: skip
    write_label_png(labels, folder.path(entry["label"]), colours)
    write_overlay(image, labels, colours, folder.path(entry["overlay"]))
    if probs:
        entry["probs"] = f"probs/{path.stem}.npy"
        soft = logits.softmax(0).to(torch.float16).numpy()  # (K, H, W)
        np.save(folder.path(entry["probs"]), soft)
    return entry


def _classification_rows(path: Path, logits, k: int, names: list[str]) -> list[list[Any]]:
    scores, ids = logits.softmax(0).topk(k)  # (k,), (k,)
    return [
        [str(path), rank + 1, int(i), names[int(i)], f"{float(s):.6f}"]
        for rank, (s, i) in enumerate(zip(scores, ids, strict=True))
    ]
