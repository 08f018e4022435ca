"""DDP on CPU: two gloo processes, each updating half the data, sync to the single-process result."""

import os
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from semantic_anchors.metrics import ClassificationMetrics, FeatureStatistics, SegmentationMetrics

WORLD_SIZE = 2
NUM_CLASSES = 6
GROUPS = {"head": [0, 1], "body": [2, 3], "tail": [4, 5]}


def _data():
    gen = torch.Generator().manual_seed(0)
    seg_target = torch.randint(0, NUM_CLASSES - 1, (4, 8, 8), generator=gen)  # class 5 absent
    seg_target[:, :2] = 255
    seg_logits = torch.randn(4, NUM_CLASSES, 8, 8, generator=gen)
    cls_target = torch.randint(0, NUM_CLASSES, (30,), generator=gen)
    cls_logits = torch.randn(30, NUM_CLASSES, generator=gen)
    features = torch.randn(4, 5, 4, 4, generator=gen)
    return seg_logits, seg_target, cls_logits, cls_target, features


def _metrics():
    return (
        SegmentationMetrics(NUM_CLASSES, groups=GROUPS),
        ClassificationMetrics(NUM_CLASSES, groups=GROUPS),
        FeatureStatistics(NUM_CLASSES, feat_dim=5),
    )


def _evaluate(shard=slice(None), cls_shard=slice(None)):
    seg_logits, seg_target, cls_logits, cls_target, features = _data()
    seg, cls, feats = _metrics()
    for i in range(4)[shard]:  # one image at a time, as a data loader would
        seg.update(seg_logits[i : i + 1], seg_target[i : i + 1])
        feats.update(features[i : i + 1], seg_target[i : i + 1])
    cls.update(cls_logits[cls_shard], cls_target[cls_shard])
    return seg, cls, feats


def _worker(rank, init_file, out_dir):
    # gloo needs an interface to bind; loopback is enough for one machine.
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo" if sys.platform.startswith("linux") else "lo0")
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD_SIZE
    )
    try:
        # uneven halves: rank 0 gets 1 image / 13 samples, rank 1 gets 3 images / 17 samples
        shard = slice(0, 1) if rank == 0 else slice(1, 4)
        cls_shard = slice(0, 13) if rank == 0 else slice(13, 30)
        seg, cls, feats = _evaluate(shard, cls_shard)
        local = seg.confusion_matrix
        with seg.sync_context():
            synced = seg.confusion_matrix
        result = {
            "seg": seg.compute(),
            "cls": cls.compute(),
            "feats": feats.compute(),
            "table": seg.per_class_table(),
            "synced_confmat": synced,
            "local_confmat_after": seg.confusion_matrix,
            "local_confmat": local,
        }
        torch.save(result, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _assert_same(got, expected):
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        if isinstance(value, torch.Tensor):
            torch.testing.assert_close(got[key], value, equal_nan=True, rtol=1e-12, atol=1e-12)


def _nan_to_str(rows):
    return [{k: "nan" if v != v else v for k, v in row.items()} for row in rows]


@pytest.mark.slow
def test_two_gloo_processes_equal_single_process(tmp_path):
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    seg, cls, feats = _evaluate()
    expected = {"seg": seg.compute(), "cls": cls.compute(), "feats": feats.compute()}
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD_SIZE)]
    for rank, result in enumerate(results):
        for name in ("seg", "cls", "feats"):
            _assert_same(result[name], expected[name])
        assert torch.equal(result["synced_confmat"], seg.confusion_matrix)
        assert torch.equal(result["local_confmat_after"], result["local_confmat"])  # unsynced again
        assert _nan_to_str(result["table"]) == _nan_to_str(seg.per_class_table()), rank
    # each rank really saw only its part
    assert not torch.equal(results[0]["local_confmat"], seg.confusion_matrix)
    assert torch.equal(
        results[0]["local_confmat"] + results[1]["local_confmat"], seg.confusion_matrix
    )
