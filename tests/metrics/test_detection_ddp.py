"""DetectionMetrics under DDP: two gloo processes with uneven shares give the single-process AP."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from semantic_anchors.metrics import DetectionMetrics

pytest.importorskip("pycocotools")

WORLD_SIZE = 2
NUM_CLASSES = 4
GROUPS = {"head": [1], "body": [2], "tail": [3]}


def _images():
    """Seven images: ground truth and jittered, partly mislabelled detections."""
    gen = torch.Generator().manual_seed(0)
    out = []
    for _ in range(7):
        n = int(torch.randint(0, 4, (1,), generator=gen))
        xy = torch.rand(n, 2, generator=gen) * 40
        boxes = torch.cat([xy, xy + 8 + torch.rand(n, 2, generator=gen) * 16], 1)  # (n, 4)
        labels = torch.randint(1, NUM_CLASSES, (n,), generator=gen)
        jitter = boxes + torch.randn(n, 4, generator=gen) * 2
        flipped = torch.where(torch.rand(n, generator=gen) < 0.2, 1 + labels % 3, labels)
        preds = {"boxes": jitter, "scores": torch.rand(n, generator=gen), "labels": flipped}
        out.append((preds, {"boxes": boxes, "labels": labels}))
    return out


def _evaluate(part=slice(None)):
    metric = DetectionMetrics(NUM_CLASSES, groups=GROUPS)
    for preds, target in _images()[part]:
        metric.update([preds], [target])
    return metric


def _worker(rank, init_file, out_dir):
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo" if sys.platform.startswith("linux") else "lo0")
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD_SIZE
    )
    try:
        metric = _evaluate(slice(0, 2) if rank == 0 else slice(2, 7))
        torch.save(
            {"synced": metric.compute(), "local": len(metric.gt_counts)},
            Path(out_dir) / f"rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_processes_equal_single_process(tmp_path):
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    expected = _evaluate().compute()
    assert 0 < float(expected["mAP"]) < 100
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    assert [r["local"] for r in results] == [2, 5]  # each rank kept only its images
    for result in results:
        assert result["synced"].keys() == expected.keys()
        for key, value in expected.items():
            torch.testing.assert_close(result["synced"][key], value, equal_nan=True)
