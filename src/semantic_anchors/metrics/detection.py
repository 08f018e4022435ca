"""COCO box detection metrics with per-class and head / body / tail AP.

The COCO evaluation itself is the backend's ``COCOeval`` (``pycocotools``, the reference, or
``faster_coco_eval``), run in ``compute()`` on everything accumulated. This is what
``torchmetrics.detection.MeanAveragePrecision`` does too; that class is not used because it
refuses to start without ``torchvision``, which the project does not install (its PyPI wheel
does not load beside the CPU build of torch). The numbers are reported the project's way: as
**percentages in [0, 100]**, NaN for what cannot be measured, and averaged over the dataset's
class groups like :class:`~semantic_anchors.metrics.SegmentationMetrics`.
"""

from __future__ import annotations

import contextlib
import importlib
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from semantic_anchors.functional.confusion import group_means, validate_groups

__all__ = ["BACKENDS", "DetectionMetrics", "coco_evaluate"]

BACKENDS = ("pycocotools", "faster_coco_eval")
BOX_FORMATS = ("xyxy", "xywh", "cxcywh")
_STATES = ("det_boxes", "det_scores", "det_labels", "det_counts")
_STATES += ("gt_boxes", "gt_labels", "gt_counts")
_PIP = {"pycocotools": "semantic-anchors[detection]", "faster_coco_eval": "faster-coco-eval"}


def _backend_api(backend: str):
    """``(COCO, COCOeval)`` of a backend, imported on first use."""
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {list(BACKENDS)}, received {backend!r}")
    try:
        if backend == "pycocotools":
            coco = importlib.import_module("pycocotools.coco")
            return coco.COCO, importlib.import_module("pycocotools.cocoeval").COCOeval
        module = importlib.import_module("faster_coco_eval")
        return module.COCO, module.COCOeval_faster
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            f"DetectionMetrics(backend={backend!r}) needs the {backend!r} package: "
            f"pip install '{_PIP[backend]}'",
            name=backend,
        ) from err


def _to_xywh(boxes: Tensor, box_format: str) -> Tensor:
    """``(N, 4)`` boxes in ``box_format`` -> COCO's ``(x, y, w, h)``, float64."""
    boxes = boxes.detach().double().cpu()
    a, b, c, d = boxes.unbind(1)  # (N,) each
    if box_format == "xyxy":
        return torch.stack([a, b, c - a, d - b], 1)
    if box_format == "cxcywh":
        return torch.stack([a - c / 2, b - d / 2, c, d], 1)
    return boxes.clone()


def coco_evaluate(gt_boxes, gt_labels, det_boxes, det_scores, det_labels, num_classes, backend):
    """Run COCO box evaluation on per-image lists of ``(x, y, w, h)`` boxes and labels.

    Returns:
        ``(stats, per_class)``: COCOeval's 12 summary numbers and the ``(C,)`` per-class AP
        at IoU 0.50:0.95, area "all", 100 detections (-1 where a class has no ground truth),
        as fractions; ``None`` when there is no image.
    """
    if not gt_boxes:
        return None
    coco_cls, eval_cls = _backend_api(backend)
    images = [{"id": i + 1} for i in range(len(gt_boxes))]
    categories = [{"id": c} for c in range(num_classes)]
    datasets = []
    for boxes_list, labels_list, scores_list in (
        (gt_boxes, gt_labels, None),
        (det_boxes, det_labels, det_scores),
    ):
        annotations = []
        for i, (boxes, labels) in enumerate(zip(boxes_list, labels_list, strict=True)):
            scores = scores_list[i].tolist() if scores_list is not None else None
            for k, (box, label) in enumerate(zip(boxes.tolist(), labels.tolist(), strict=True)):
                ann = {"id": len(annotations) + 1, "image_id": i + 1, "category_id": int(label)}
                ann.update(bbox=box, area=box[2] * box[3], iscrowd=0)
                if scores is not None:
                    ann["score"] = float(scores[k])
                annotations.append(ann)
        coco = coco_cls()
        coco.dataset = {"images": images, "annotations": annotations, "categories": categories}
        with contextlib.redirect_stdout(io.StringIO()):
            coco.createIndex()
        datasets.append(coco)
    evaluator = eval_cls(datasets[0], datasets[1], iouType="bbox")
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    precision = np.asarray(evaluator.eval["precision"])[:, :, :, 0, -1]  # (T, R, C)
    valid = precision > -1
    sums, counts = np.where(valid, precision, 0).sum((0, 1)), valid.sum((0, 1))  # (C,)
    per_class = np.where(counts > 0, sums / np.maximum(counts, 1), -1.0)
    return np.asarray(evaluator.stats, dtype=np.float64), per_class


def _percent(value) -> Tensor:
    """COCO's -1 ("no ground truth") -> NaN, else a percentage, float64."""
    value = torch.as_tensor(value, dtype=torch.float64)
    return torch.where(value < 0, torch.nan, value * 100)


class DetectionMetrics(Metric):
    """COCO box mAP, AP50, AP75, AR100 and per-class / per-group AP over a dataset.

    ``compute()`` returns a dict; every rate is a **percentage in [0, 100]**:

    * ``mAP``: COCO AP averaged over IoU 0.50:0.05:0.95 and the classes with ground truth.
    * ``AP50``, ``AP75``: AP at IoU 0.5 / 0.75. ``AR100``: recall with 100 detections an image.
    * ``AP`` ``(C,)``: per-class COCO AP, NaN for a class without ground truth (COCO's -1); a
      class with ground truth and no detection has AP 0.
    * ``{name}_mAP`` for each group, e.g. ``head_mAP``: mean of the group's non-NaN ``AP``.

    Every value is NaN before any image was seen. Labels are class indices in ``[0, C)``; with
    the scene datasets they are the semantic labels (the background, 0, then never has ground
    truth), so ``groups=dataset.groups`` applies as it is. COCO keeps the 100 best-scored
    detections of an image.

    States are flat tensors of boxes, scores, labels and per-image counts
    (``dist_reduce_fx="cat"``: under DDP ``compute()`` gathers every process's images, one
    all-gather per state however many images each holds); the COCO evaluation runs on the CPU
    in ``compute()``.

    Args:
        num_classes: number of classes ``C`` (>= 2).
        groups: optional ``{name: class indices}``, e.g. ``dataset.groups``.
        box_format: ``"xyxy"`` (default), ``"xywh"`` or ``"cxcywh"``, in pixels (COCO's area
            ranges are in pixels; the overall numbers do not depend on the unit).
        backend: ``"pycocotools"`` (default, the reference COCO code) or ``"faster_coco_eval"``.
        **kwargs: forwarded to :class:`torchmetrics.Metric`.

    Shape:
        - preds: one dict per image: ``boxes`` ``(N, 4)`` float, ``scores`` ``(N,)``,
          ``labels`` ``(N,)`` int.
        - target: one dict per image: ``boxes`` ``(M, 4)``, ``labels`` ``(M,)``.

    Raises:
        ValueError: ``num_classes`` < 2, bad ``groups``, ``box_format`` or ``backend``; in
            ``update``: lists of different lengths, a missing key, a bad shape or dtype, a label
            outside ``[0, C)``.
        ModuleNotFoundError: the backend is not installed (names the package to install).

    Example:
        >>> metric = DetectionMetrics(num_classes=3, groups={"head": [1], "tail": [2]})
        >>> target = [{"boxes": torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 40]]),
        ...            "labels": torch.tensor([1, 2])}]
        >>> preds = [{"boxes": torch.tensor([[0.0, 0, 10, 10]]), "scores": torch.tensor([0.9]),
        ...           "labels": torch.tensor([1])}]
        >>> metric.update(preds, target)
        >>> result = metric.compute()
        >>> {k: [round(v, 6) for v in result[k].reshape(-1).tolist()]
        ...  for k in ("AP", "mAP", "head_mAP", "tail_mAP")}  # COCO's precision is 1 - 2e-16
        {'AP': [nan, 100.0, 0.0], 'mAP': [50.0], 'head_mAP': [100.0], 'tail_mAP': [0.0]}
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        num_classes: int,
        groups: Mapping[str, Sequence[int] | Tensor] | None = None,
        box_format: str = "xyxy",
        backend: str = "pycocotools",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.groups = validate_groups(groups, num_classes)  # checks num_classes too
        if box_format not in BOX_FORMATS:
            raise ValueError(
                f"box_format: expected one of {list(BOX_FORMATS)}, received {box_format!r}"
            )
        _backend_api(backend)  # fail now, not after an epoch
        self.num_classes, self.box_format, self.backend = num_classes, box_format, backend
        for name in _STATES:  # flat 1-D pieces: one all-gather each, whatever a rank holds
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def _checked(self, name: str, i: int, item, keys: tuple[str, ...]) -> list[Tensor]:
        if not isinstance(item, Mapping) or any(k not in item for k in keys):
            raise ValueError(
                f"{name}[{i}]: expected a dict with keys {list(keys)}, received {item!r}"
            )
        boxes, labels = item["boxes"], item["labels"]
        n = labels.shape[0] if isinstance(labels, Tensor) and labels.ndim == 1 else -1
        if not isinstance(boxes, Tensor) or boxes.shape != (n, 4) or not boxes.is_floating_point():
            raise ValueError(
                f"{name}[{i}]: expected float 'boxes' (N, 4) and int 'labels' (N,), received "
                f"{getattr(boxes, 'shape', boxes)} and {getattr(labels, 'shape', labels)}"
            )
        if labels.is_floating_point() or labels.dtype == torch.bool:
            raise ValueError(f"{name}[{i}]['labels']: expected integers, received {labels.dtype}")
        if n and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise ValueError(
                f"{name}[{i}]['labels']: expected class indices in [0, {self.num_classes}), "
                f"received values in [{int(labels.min())}, {int(labels.max())}]"
            )
        out = [_to_xywh(boxes, self.box_format), labels.detach().long().cpu()]
        if "scores" in keys:
            scores = item["scores"]
            if not isinstance(scores, Tensor) or scores.shape != (n,):
                raise ValueError(f"{name}[{i}]['scores']: expected shape ({n},)")
            out.append(scores.detach().double().cpu())
        return out

    def update(
        self, preds: Sequence[Mapping[str, Tensor]], target: Sequence[Mapping[str, Tensor]]
    ) -> None:
        """Add a batch: one prediction dict and one target dict per image.

        Raises:
            ValueError: lists of different lengths or a malformed dict (see the class).
        """
        if not isinstance(preds, Sequence) or not isinstance(target, Sequence):
            raise ValueError("preds, target: expected lists of dicts, one per image")
        if len(preds) != len(target):
            raise ValueError(
                f"preds, target: expected one dict per image in both, received {len(preds)} "
                f"and {len(target)}"
            )
        for i, (p, t) in enumerate(zip(preds, target, strict=True)):
            boxes, labels, scores = self._checked("preds", i, p, ("boxes", "scores", "labels"))
            gt_boxes, gt_labels = self._checked("target", i, t, ("boxes", "labels"))
            pieces = (boxes.reshape(-1), scores, labels, len(labels))
            pieces += (gt_boxes.reshape(-1), gt_labels, len(gt_labels))
            for name, piece in zip(_STATES, pieces, strict=True):
                getattr(self, name).append(torch.as_tensor(piece).reshape(-1))

    def _per_image(self) -> tuple[list[Tensor], ...]:
        """The states (lists here, one tensor each after a DDP sync) split back into images."""
        flat = {}
        for name in _STATES:
            state = getattr(self, name)
            flat[name] = dim_zero_cat(state) if len(state) else torch.zeros(0)
        out = []
        for side in ("det", "gt"):
            counts = flat[f"{side}_counts"].long().tolist()  # (I,)
            out.append(list(flat[f"{side}_boxes"].double().reshape(-1, 4).split(counts)))
            out.append([t.long() for t in flat[f"{side}_labels"].split(counts)])
            if side == "det":
                out.append(list(flat["det_scores"].double().split(counts)))
        return tuple(out)

    def compute(self) -> dict[str, Tensor]:
        """The metrics of every image seen since the last ``reset()`` (percentages, see class)."""
        det_boxes, det_labels, det_scores, gt_boxes, gt_labels = self._per_image()
        result = coco_evaluate(
            gt_boxes, gt_labels, det_boxes, det_scores, det_labels, self.num_classes, self.backend
        )
        stats, per_class = (
            result if result is not None else ([-1.0] * 12, [-1.0] * self.num_classes)
        )
        out = {
            name: _percent(stats[k])
            for name, k in (("mAP", 0), ("AP50", 1), ("AP75", 2), ("AR100", 8))
        }
        out["AP"] = _percent(per_class)  # (C,)
        for name, value in group_means(out["AP"], self.groups).items():
            out[f"{name}_mAP"] = value
        return out
