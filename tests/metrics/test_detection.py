"""DetectionMetrics: the numbers of pycocotools' COCOeval run directly, reported as percentages."""

from __future__ import annotations

import contextlib
import io
import math
import sys

import numpy as np
import pytest
import torch

from semantic_anchors.metrics import DetectionMetrics

COCO = pytest.importorskip("pycocotools.coco").COCO
COCOeval = pytest.importorskip("pycocotools.cocoeval").COCOeval

NUM_CLASSES = 6  # 0 = background: never in the ground truth, as with the scene datasets


def box(x, y, w, h):
    return [float(x), float(y), float(x + w), float(y + h)]  # xyxy


# Four images, classes 1..5. Class 1: two matches, one of them loose; class 2: a false positive
# scored above the true one, and a missed object; class 3: ground truth, no detection (AP 0);
# class 4: detections only (no ground truth, AP NaN); class 5: one good match. Image 3 holds
# no ground truth but a false positive.
GROUND_TRUTH = [
    [(1, box(2, 2, 20, 20)), (2, box(30, 30, 12, 16)), (3, box(5, 40, 10, 10))],
    [(1, box(10, 10, 30, 20)), (2, box(40, 5, 15, 15)), (2, box(0, 0, 8, 8))],
    [(5, box(20, 20, 25, 25))],
    [],
]
DETECTIONS = [
    [(1, box(2, 3, 20, 20), 0.9), (2, box(31, 30, 12, 15), 0.6), (2, box(50, 50, 10, 10), 0.8)],
    [(1, box(14, 12, 30, 20), 0.7), (2, box(40, 6, 14, 15), 0.95), (4, box(0, 40, 9, 9), 0.5)],
    [(5, box(21, 20, 25, 24), 0.85), (1, box(0, 0, 10, 10), 0.3)],
    [(4, box(1, 1, 5, 5), 0.4), (2, box(30, 30, 10, 10), 0.2)],
]


def as_dicts(images, with_scores):
    out = []
    for items in images:
        entry = {
            "boxes": torch.tensor([it[1] for it in items]).reshape(-1, 4),
            "labels": torch.tensor([it[0] for it in items], dtype=torch.long),
        }
        if with_scores:
            entry["scores"] = torch.tensor([it[2] for it in items])
        out.append(entry)
    return out


def reference(cat_ids=None, ground_truth=GROUND_TRUTH, detections_=DETECTIONS):
    """COCOeval on the same case, the usual way: a ground-truth dict and ``loadRes``."""
    images = [{"id": i + 1, "height": 64, "width": 64} for i in range(len(ground_truth))]
    annotations, detections = [], []
    for i, items in enumerate(ground_truth):
        for label, (x0, y0, x1, y1) in items:
            annotations.append({
                "id": len(annotations) + 1, "image_id": i + 1, "category_id": label,
                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0,
            })  # fmt: skip
    for i, items in enumerate(detections_):
        for label, (x0, y0, x1, y1), score in items:
            detections.append({
                "image_id": i + 1, "category_id": label, "bbox": [x0, y0, x1 - x0, y1 - y0],
                "score": score,
            })  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {
            "images": images,
            "annotations": annotations,
            "categories": [{"id": c, "name": str(c)} for c in range(1, NUM_CLASSES)],
        }
        gt.createIndex()
        evaluator = COCOeval(gt, gt.loadRes(detections), iouType="bbox")
        if cat_ids is not None:
            evaluator.params.catIds = cat_ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats


def metric_on_case(**kwargs):
    metric = DetectionMetrics(NUM_CLASSES, **kwargs)
    preds, target = as_dicts(DETECTIONS, True), as_dicts(GROUND_TRUTH, False)
    metric.update(preds[:2], target[:2])  # two batches
    metric.update(preds[2:], target[2:])
    return metric.compute()


@pytest.mark.parametrize("backend", ["pycocotools", "faster_coco_eval"])
def test_equals_cocoeval_on_a_hand_made_case(backend):
    if backend == "faster_coco_eval":
        pytest.importorskip("faster_coco_eval")
    result = metric_on_case(backend=backend)
    stats = reference()
    assert 0 < stats[0] < stats[1] < 1  # a case where the thresholds matter
    for name, k in (("mAP", 0), ("AP50", 1), ("AP75", 2), ("AR100", 8)):
        assert result[name].dtype == torch.float64
        assert float(result[name]) == pytest.approx(100 * stats[k], abs=1e-9), name
    ap = result["AP"].tolist()
    assert math.isnan(ap[0]) and math.isnan(ap[4])  # background, and detections without truth
    for c in (1, 2, 3, 5):
        assert ap[c] == pytest.approx(100 * reference(cat_ids=[c])[0], abs=1e-9), c
    assert ap[3] == 0 and 0 < ap[2] < ap[1] < 100


def test_perfect_predictions_score_100_and_a_missed_class_0():
    target = as_dicts(GROUND_TRUTH, False)
    perfect = [dict(t, scores=torch.linspace(0.9, 0.5, len(t["labels"]))) for t in target]
    metric = DetectionMetrics(NUM_CLASSES)
    metric.update(perfect, target)
    result = metric.compute()
    for name in ("mAP", "AP50", "AP75", "AR100"):
        assert float(result[name]) == pytest.approx(100, abs=1e-9), name
    ap = result["AP"]
    assert torch.allclose(ap[[1, 2, 3, 5]], torch.full((4,), 100.0, dtype=torch.float64))
    assert ap[[0, 4]].isnan().all()
    without_3 = [
        {k: v[t["labels"] != 3] for k, v in p.items()} for p, t in zip(perfect, target, strict=True)
    ]
    metric.reset()
    metric.update(without_3, target)
    result = metric.compute()
    assert float(result["AP"][3]) == 0
    assert float(result["mAP"]) == pytest.approx(75, abs=1e-9)  # (100 + 100 + 0 + 100) / 4


def test_groups_average_their_classes():
    groups = {"head": [0, 1, 2], "body": [3], "tail": [4, 5]}
    result = metric_on_case(groups=groups)
    ap = result["AP"].tolist()
    assert float(result["head_mAP"]) == pytest.approx((ap[1] + ap[2]) / 2)  # 0: no truth
    assert float(result["body_mAP"]) == 0
    assert float(result["tail_mAP"]) == pytest.approx(ap[5])  # 4: no truth
    assert float(result["tail_mAP"]) != pytest.approx(np.nanmean(ap))
    none = metric_on_case(groups={"empty": [], "no-truth": [0, 4]})
    assert none["empty_mAP"].isnan() and none["no-truth_mAP"].isnan()


@pytest.mark.parametrize("box_format", ["xywh", "cxcywh"])
def test_box_formats(box_format):
    def convert(dicts):
        out = []
        for d in dicts:
            x0, y0, x1, y1 = d["boxes"].unbind(1)
            if box_format == "xywh":
                boxes = torch.stack([x0, y0, x1 - x0, y1 - y0], 1)
            else:
                boxes = torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], 1)
            out.append(dict(d, boxes=boxes))
        return out

    metric = DetectionMetrics(NUM_CLASSES, box_format=box_format)
    metric.update(convert(as_dicts(DETECTIONS, True)), convert(as_dicts(GROUND_TRUTH, False)))
    expected = metric_on_case()
    assert float(metric.compute()["mAP"]) == pytest.approx(float(expected["mAP"]), abs=1e-9)


def test_nothing_seen_and_images_without_anything():
    metric = DetectionMetrics(NUM_CLASSES, groups={"head": [1]})
    with pytest.warns(UserWarning, match="compute"):  # torchmetrics: compute before update
        result = metric.compute()
    assert all(bool(v.isnan().all()) for v in result.values())
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}
    metric.update([dict(empty, scores=torch.zeros(0))], [empty])
    assert metric.compute()["mAP"].isnan()  # no ground truth anywhere: COCO's -1


def test_bad_input():
    metric = DetectionMetrics(NUM_CLASSES)
    good_p, good_t = as_dicts(DETECTIONS[:1], True), as_dicts(GROUND_TRUTH[:1], False)
    with pytest.raises(ValueError, match="one dict per image in both, received 1 and 2"):
        metric.update(good_p, good_t * 2)
    with pytest.raises(ValueError, match=r"preds\[0\]: expected a dict with keys"):
        metric.update([{"boxes": good_p[0]["boxes"]}], good_t)
    with pytest.raises(
        ValueError, match=r"target\[0\]\['labels'\]: expected class indices in \[0, 6\)"
    ):
        metric.update(good_p, [dict(good_t[0], labels=good_t[0]["labels"] + 5)])
    with pytest.raises(ValueError, match=r"expected float 'boxes' \(N, 4\)"):
        metric.update(good_p, [dict(good_t[0], boxes=good_t[0]["boxes"][:, :3])])
    with pytest.raises(ValueError, match=r"\['scores'\]: expected shape \(3,\)"):
        metric.update([dict(good_p[0], scores=torch.zeros(2))], good_t)
    with pytest.raises(ValueError, match="box_format: expected one of"):
        DetectionMetrics(NUM_CLASSES, box_format="yxyx")
    with pytest.raises(ValueError, match="backend: expected one of"):
        DetectionMetrics(NUM_CLASSES, backend="detectron")
    with pytest.raises(ValueError, match="num_classes"):
        DetectionMetrics(1)


def test_a_missing_backend_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "pycocotools.coco", None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'semantic-anchors\[detection\]'"):
        DetectionMetrics(NUM_CLASSES)
    monkeypatch.setitem(sys.modules, "faster_coco_eval", None)
    with pytest.raises(ModuleNotFoundError, match="pip install 'faster-coco-eval'"):
        DetectionMetrics(NUM_CLASSES, backend="faster_coco_eval")


def test_forward_gives_the_batch_and_accumulates():
    metric = DetectionMetrics(NUM_CLASSES)
    preds, target = as_dicts(DETECTIONS, True), as_dicts(GROUND_TRUTH, False)
    first = metric(preds[:1], target[:1])  # the first image alone
    alone = DetectionMetrics(NUM_CLASSES)
    alone.update(preds[:1], target[:1])
    assert float(first["mAP"]) == float(alone.compute()["mAP"])
    metric(preds[1:], target[1:])
    assert float(metric.compute()["mAP"]) == pytest.approx(100 * reference()[0], abs=1e-9)


def test_per_class_ap_keeps_100_detections_an_image():
    """A true positive scored below 14 false positives still counts (COCO's cap is 100, not 10)."""
    ground_truth = [[(1, box(10, 10, 20, 20)), (2, box(40, 40, 10, 10))]]
    detections = [[(1, box(40 + k % 3, 0, 5, 5), 0.9 - k / 100) for k in range(14)]]
    detections[0] += [(1, box(10, 10, 20, 20), 0.5), (2, box(40, 40, 10, 10), 0.9)]
    metric = DetectionMetrics(NUM_CLASSES)
    metric.update(as_dicts(detections, True), as_dicts(ground_truth, False))
    result = metric.compute()
    expected = reference([1], ground_truth, detections)[0]
    assert 0 < expected < 0.1 and float(result["AP"][1]) == pytest.approx(100 * expected, abs=1e-9)
