"""Data throughput: images/s of each training pipeline, of generating synthlt, and of the CPU demo model.

The CPU demo trains a small FCN on ``synthlt`` 64x64 with batch 16; the data pipeline must feed
it at least twice as fast as the model consumes images. This script measures both sides
separately and prints the ratio::

    python benchmarks/data_throughput.py            # full run (about a minute)
    python benchmarks/data_throughput.py --quick    # fewer batches
    python benchmarks/data_throughput.py --readers  # also a Cityscapes-layout file reader fixture

Every pipeline is ``build_dataset(...)`` + ``build_transforms(..., "train")`` in a DataLoader with
2 workers (persistent, warmed up before timing).
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from semantic_anchors.data import build_dataset, build_transforms
from semantic_anchors.data.datasets.synthlt import SynthLTConfig, generate_synthlt


def loader_rate(dataset, batch_size: int, batches: int, workers: int = 2, warmup: int = 3) -> float:
    """Images/s delivered by a DataLoader over ``dataset`` (after ``warmup`` batches)."""
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        persistent_workers=workers > 0,
    )
    seen, start, rate = 0, None, None
    while rate is None:
        iterator = iter(loader)
        for i, (images, _) in enumerate(iterator):
            if i == warmup and start is None:
                start, seen = time.perf_counter(), 0
            seen += images.shape[0]
            if start is not None and seen >= batches * batch_size:
                rate = seen / (time.perf_counter() - start)
                break
        del iterator  # shuts the workers down before the next measurement
    del loader
    gc.collect()
    return rate


class PerSampleSeeded(torch.utils.data.Dataset):
    """Re-seeds torch before every item, as a loader whose augmentation is a function of the
    sample's position does (``semantic_anchors.train``): the transform re-seeds per sample."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        torch.manual_seed(1_000_003 + index)
        return self.dataset[index]


def synthlt_generation_rate(num_images: int) -> float:
    generate_synthlt.cache_clear()
    start = time.perf_counter()
    generate_synthlt(SynthLTConfig(), "train", num_images)
    return num_images / (time.perf_counter() - start)


def demo_model(num_classes: int) -> tuple[nn.Module, str]:
    """The CPU demo model (``fcn_small``) or, if the models package is missing, a stand-in."""
    try:
        from semantic_anchors.models import create_model

        return create_model("fcn_small", num_classes=num_classes), "fcn_small"
    except (ImportError, ValueError, TypeError):
        layers, channels = [], 3
        for width, stride in ((16, 2), (32, 2), (64, 2), (64, 1)):
            layers += [nn.Conv2d(channels, width, 3, stride, 1), nn.BatchNorm2d(width), nn.ReLU()]
            channels = width
        layers += [
            nn.Conv2d(channels, num_classes, 1),
            nn.Upsample(scale_factor=8, mode="bilinear"),
        ]
        return nn.Sequential(*layers), "stand-in conv net"


def model_rate(
    batch_size: int, steps: int, size: int = 64, num_classes: int = 13, repeats: int = 3
) -> tuple[float, str]:
    """Images/s of SGD training steps (forward, backward, update) on ``(B, 3, size, size)``."""
    model, name = demo_model(num_classes)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    images = torch.randn(batch_size, 3, size, size)  # (B, 3, S, S)
    targets = torch.randint(0, num_classes, (batch_size, size, size))  # (B, S, S)

    def step():
        loss = nn.functional.cross_entropy(model(images), targets, ignore_index=255)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for _ in range(3):
        step()
    rates = []
    for _ in range(repeats):  # best of a few: other jobs on a shared machine only slow it down
        start = time.perf_counter()
        for _ in range(steps):
            step()
        rates.append(steps * batch_size / (time.perf_counter() - start))
    return max(rates), name


def cityscapes_fixture(root: Path, count: int = 16, size=(512, 1024)) -> Path:
    """A Cityscapes-layout folder of random PNGs (not a real dataset; for reader speed only)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for k in range(count):
        stem = f"bench_{k:06d}_000019"
        image_dir = root / "leftImg8bit" / "train" / "bench"
        mask_dir = root / "gtFine" / "train" / "bench"
        image_dir.mkdir(parents=True, exist_ok=True)
        mask_dir.mkdir(parents=True, exist_ok=True)
        # smooth images compress like photos; masks are blocks of random classes
        small = rng.integers(0, 256, size=(size[0] // 16, size[1] // 16, 3), dtype=np.uint8)
        Image.fromarray(small).resize(size[::-1], Image.BILINEAR).save(
            image_dir / f"{stem}_leftImg8bit.png"
        )
        blocks = rng.integers(0, 19, size=(size[0] // 64, size[1] // 64), dtype=np.uint8)
        mask = np.kron(blocks, np.ones((64, 64), dtype=np.uint8))
        Image.fromarray(mask).save(mask_dir / f"{stem}_gtFine_labelTrainIds.png")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer batches")
    parser.add_argument("--readers", action="store_true", help="also time a file-reader fixture")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    batches = 20 if args.quick else 60
    bs = args.batch_size
    torch.manual_seed(0)
    rows = []

    rate = synthlt_generation_rate(500 if args.quick else 2000)
    rows.append(("synthlt generation (in memory)", "-", rate))

    seg = {"crop_size": 64}
    pipelines = [
        ("synthlt", {}, "segmentation", seg, bs),
        ("fashion-scenes-lt", {}, "segmentation", seg, bs),
        ("fashion-lt", {}, "classification", {}, 128),
    ]
    demo_rate = None
    for name, kwargs, task, tkw, batch in pipelines:
        try:
            ds = build_dataset(name, **kwargs)
        except FileNotFoundError as err:
            print(f"skipping {name}: {err}".splitlines()[0])
            continue
        ds.transform = build_transforms(task, "train", mean=ds.mean, std=ds.std, **tkw)
        rate = loader_rate(ds, batch, batches if batch == bs else max(5, batches // 4))
        rows.append((f"{name} train pipeline", f"{batch}", rate))
        if name == "synthlt":
            demo_rate = rate
            rate = loader_rate(PerSampleSeeded(ds), batch, batches)
            rows.append((f"{name} train pipeline, re-seeded per sample", f"{batch}", rate))
            demo_rate = min(demo_rate, rate)

    if args.readers:
        with tempfile.TemporaryDirectory() as tmp:
            ds = build_dataset("cityscapes", root=cityscapes_fixture(Path(tmp)))
            ds.transform = build_transforms(
                "segmentation", "train", crop_size=512, base_size=(2048, 1024)
            )
            rows.append(
                (
                    "cityscapes-layout reader, 512x1024 PNG, crop 512",
                    "2",
                    loader_rate(ds, 2, 10, warmup=1),
                )
            )

    model_ips, model_name = model_rate(bs, 10 if args.quick else 20)
    rows.append((f"CPU demo model: {model_name} train step, 64x64", f"{bs}", model_ips))

    width = max(len(r[0]) for r in rows)
    print(f"\n{'what':<{width}}  {'batch':>5}  {'images/s':>10}")
    print("-" * (width + 20))
    for what, batch, ips in rows:
        print(f"{what:<{width}}  {batch:>5}  {ips:>10.0f}")
    print(f"\n(torch threads: {torch.get_num_threads()}, DataLoader workers: 2)")
    if demo_rate is not None:
        ratio = demo_rate / model_ips
        verdict = "OK" if ratio >= 2 else "TOO SLOW"
        print(f"data / model ratio for the CPU demo: {ratio:.1f}x (target >= 2x): {verdict}")


if __name__ == "__main__":
    main()
