"""PyTorch vs onnxruntime CPU inference time of zoo models, side by side in one run.

Each model (random init, 19 classes) is exported with ``export_onnx`` (the graph
``semantic-anchors export --format onnx`` writes) and both run the same input with the same
number of intra-op threads: the median of ``--repeats`` timed forward passes after one warm-up
pass, and the largest difference of their logits. A ratio above 1 means onnxruntime is faster.

Usage::

    python benchmarks/onnx_inference.py                    # batch 1, 128x128, 2 threads
    python benchmarks/onnx_inference.py --size 256 --threads 4 --models fcn_small fcn_hr18
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from semantic_anchors.models import create_model
from semantic_anchors.models.io.onnx import OnnxModel, export_onnx

MODELS = ("fcn_small", "fcn_hr18", "deeplabv3_r50_d8", "segformer_b0")


def _median_ms(run, repeats: int) -> float:
    run()  # warm-up: allocations, onnxruntime's first-run graph preparation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def measure(name: str, *, size: int = 128, batch: int = 1, threads: int = 2, repeats: int = 5,
            num_classes: int = 19) -> dict:  # fmt: skip
    """One row: the model's PyTorch and onnxruntime times (ms) and their max abs difference."""
    torch.set_num_threads(threads)
    model = create_model(name, num_classes=num_classes).eval()
    images = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory() as folder:
        file = export_onnx(model, Path(folder) / f"{name}.onnx", in_channels=3, metadata={},
                           name=name, verify=False)  # fmt: skip
        session = OnnxModel(file, threads=threads)
        with torch.no_grad():
            torch_ms = _median_ms(lambda: model(images), repeats)
            onnx_ms = _median_ms(lambda: session(images), repeats)
            diff = float((session(images) - model(images)).abs().max())
            scale = float(model(images).abs().max())
    return {"model": name, "torch_ms": torch_ms, "onnx_ms": onnx_ms,
            "ratio": torch_ms / onnx_ms, "max_abs_diff": diff, "max_abs_logit": scale}  # fmt: skip


def table(rows: list[dict]) -> str:
    lines = [
        "| model | PyTorch (ms) | onnxruntime (ms) | PyTorch / onnxruntime | max abs diff |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| `{r['model']}` | {r['torch_ms']:.1f} | {r['onnx_ms']:.1f} | {r['ratio']:.2f} | "
            f"{r['max_abs_diff']:.1e} (logits up to {r['max_abs_logit']:.2g}) |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--size", type=int, default=128, help="square input side (128)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads of both (2)")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per median (5)")
    args = parser.parse_args()
    import onnxruntime

    rows = [
        measure(name, size=args.size, batch=args.batch, threads=args.threads, repeats=args.repeats)
        for name in args.models
    ]
    print(f"batch {args.batch}, {args.size}x{args.size}, {args.threads} threads, median of "
          f"{args.repeats}; torch {torch.__version__}, onnxruntime {onnxruntime.__version__}")  # fmt: skip
    print(table(rows))


if __name__ == "__main__":
    main()
