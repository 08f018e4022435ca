"""Fabricated bench folders (no training) and the tiny real-training settings of the bench tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import yaml

CLASS_NAMES = ["background", "disc", "square", "ring", "cross"]
FREQUENCIES = [500.0, 40.0, 200.0, 5.0, 20.0]  # deliberately not in class order
GROUPS = {"head": [0, 2], "body": [1], "tail": [3, 4]}

# Tiny real training (a couple of seconds per run plus process start-up).
TINY_SET = [
    "data.options={num_images: 24}",
    "data.val_options={num_images: 8}",
    "data.num_workers=0",
    "data.batch_size=8",
    "data.val_batch_size=8",
    "trainer.max_steps=2",
    "trainer.val_every=2",
    "trainer.log_every=1",
]


def fabricate_run(run_dir: Path, rng: np.random.Generator, task: str = "segmentation") -> dict:
    """Write a metrics.json as training writes it, with random numbers (one class unmeasured)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    per_class = [float(v) for v in rng.uniform(0, 100, len(CLASS_NAMES))]
    per_class[3] = None if rng.uniform() < 0.5 else per_class[3]
    if task == "segmentation":
        metrics = {"step": 10, "mIoU": float(rng.uniform(0, 100)), "aAcc": float(rng.uniform(0, 100)),
                   "mAcc": float(rng.uniform(0, 100)), "head_mIoU": float(rng.uniform(0, 100)),
                   "body_mIoU": float(rng.uniform(0, 100)), "tail_mIoU": float(rng.uniform(0, 100)),
                   "IoU": per_class}  # fmt: skip
    else:
        metrics = {"step": 10, "top1": float(rng.uniform(0, 100)), "mAcc": float(rng.uniform(0, 100)),
                   "head_Acc": float(rng.uniform(0, 100)), "body_Acc": float(rng.uniform(0, 100)),
                   "tail_Acc": float(rng.uniform(0, 100)), "Acc": per_class}  # fmt: skip
    metrics.update(class_names=CLASS_NAMES, groups=GROUPS, class_frequencies=FREQUENCIES,
                   train_seconds=float(rng.uniform(10, 100)), steps=10)  # fmt: skip
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    return metrics


def fabricate_diagnostics(
    run_dir: Path, centers: torch.Tensor, vectors=None, seed: int = 0
) -> None:
    """A cached diagnostics.pt as compute_diagnostics writes it (the run has no checkpoint)."""
    gen = torch.Generator().manual_seed(seed)
    c, d = centers.shape
    labels = torch.arange(c).repeat_interleave(6)  # (6C,)
    samples = centers.float()[labels] + 0.1 * torch.randn(len(labels), d, generator=gen)
    torch.save({
        "version": 1, "settings": {"max_images": 1000, "samples_per_class": 200},
        "checkpoint": None, "task": "segmentation", "class_names": CLASS_NAMES, "num_images": 4,
        "step": 10, "centers": centers.double(), "counts": torch.full((c,), 6),
        "compactness": torch.rand(c, generator=gen).double(),
        "mean_compactness": float(torch.rand(1, generator=gen)), "min_distance": 1.0 + seed,
        "mean_distance": 2.0 + seed, "fisher_ratio": 0.5 * (seed + 1), "samples": samples,
        "sample_labels": labels, "regularizer": "sar" if vectors is not None else "none",
        "regularizer_vectors": None if vectors is None else vectors.double(),
        "regularizer_vectors_name": "semantic anchors" if vectors is not None else "",
    }, run_dir / "diagnostics.pt")  # fmt: skip


def fabricate_bench(root: Path, methods=("none", "sar"), seeds=(0, 1, 2), task="segmentation",
                    missing=()) -> dict:  # fmt: skip
    """A bench folder with suite.yaml and fabricated runs; returns {(method, seed): metrics}."""
    rng = np.random.default_rng(0)
    suite = {"name": "fab", "description": "fabricated", "seeds": list(seeds), "set": [],
             "datasets": {"toy": {"recipe": "synthlt-fcn-quick", "set": []}},
             "methods": {m: {"set": [f"regularizer.name={m}"]} for m in methods}}  # fmt: skip
    root.mkdir(parents=True, exist_ok=True)
    (root / "suite.yaml").write_text(yaml.safe_dump(suite, sort_keys=False))
    out = {}
    for method in methods:
        for seed in seeds:
            if (method, seed) in missing:
                continue
            run = root / "runs" / "toy" / method / f"seed{seed}"
            out[(method, seed)] = fabricate_run(run, rng, task)
            (run / "command.txt").write_text(f"semantic-anchors train x --out {run}\n")
    return out
