"""The paper's Table 20 for every registered segmentor: parameters and GFLOPs, with and without SAR.

For each model (19 classes): its parameters (BatchNorm affine parameters included, buffers
excluded), the GFLOPs of one inference forward at ``--size`` (default 1024x1024, batch 1; counted
by ``torch.utils.flop_counter`` on the meta device, so nothing is computed; one multiply-add
counts as one FLOP, the convention of mmseg's ``get_flops`` and of the paper), SAR's training-only
parameters (the anchor embedding) and SAR's training-only GFLOPs (embedding + the classifier on
the C anchors; the pixel-to-anchor term is elementwise and not counted by the FLOP counter, as in
the paper's Table 20). Inference with SAR costs exactly the model alone: the exported model has
no SAR state (``semantic-anchors export``; ``tests/train/test_export.py``).

Usage::

    python benchmarks/model_cost.py                       # every registered segmentor
    python benchmarks/model_cost.py --models 'fcn_*' --size 512 --out docs/benchmarks/model_cost.md
"""

from __future__ import annotations

import argparse
import fnmatch
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from semantic_anchors import SemanticAnchorRegularizer
from semantic_anchors.models import create_model, list_models


def _flops(fn) -> int:
    """Multiply-accumulates of ``fn`` (torch counts 2 FLOPs per multiply-add; mmseg's
    ``get_flops`` and the paper's Table 20 count one), so the figures compare with theirs."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops() // 2


def measure(name: str, num_classes: int, size: int) -> dict:
    with torch.device("meta"):
        model = create_model(name, num_classes=num_classes).eval()
        images = torch.empty(1, 3, size, size)
        with torch.no_grad():
            flops = _flops(lambda: model(images))
    params = sum(p.numel() for p in model.parameters())
    # SAR's training-only part runs on real (tiny) tensors: its cost does not depend on the image.
    torch.manual_seed(0)
    classifier = _classifier_like(model)
    sar = SemanticAnchorRegularizer(num_classes, model.feat_dim, validate=False)
    features = torch.randn(1, model.feat_dim, 8, 8)
    labels = torch.randint(0, num_classes, (1, 8, 8))
    sar_flops = _flops(lambda: sar(features, labels, classifier))
    return {
        "model": name, "params": params, "gflops": flops / 1e9,
        "sar_params": sum(p.numel() for p in sar.parameters()), "sar_gflops": sar_flops / 1e9,
        "feat_dim": model.feat_dim,
    }  # fmt: skip


def _classifier_like(model: torch.nn.Module) -> torch.nn.Module:
    """A real copy of a meta model's classifier (same shape), to run SAR's anchor stream."""
    meta = model.classifier
    return torch.nn.Conv2d(meta.in_channels, meta.out_channels, 1, bias=meta.bias is not None)


def render(rows: list[dict], size: int, num_classes: int) -> str:
    lines = [
        f"| model | D | params (M) | GFLOPs at {size}x{size} | + SAR params (M, training only) "
        f"| + SAR GFLOPs (training only) | inference with SAR |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| `{r['model']}` | {r['feat_dim']} | {r['params'] / 1e6:.2f} | {r['gflops']:.1f} "
            f"| +{r['sar_params'] / 1e6:.2f} | +{r['sar_gflops']:.3f} | unchanged |"
        )
    return "\n".join(lines) + f"\n\n{num_classes} classes, batch 1, inference forward."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="*", help="shell pattern of registry names")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--classes", type=int, default=19)
    parser.add_argument("--out", type=Path, help="also write the table as markdown here")
    args = parser.parse_args()
    names = [n for n in list_models(task="segmentation") if fnmatch.fnmatchcase(n, args.models)]
    rows = []
    for name in names:
        try:
            rows.append(measure(name, args.classes, args.size))
        except ModuleNotFoundError as err:  # an optional extra (e.g. transformers) is missing
            print(f"skipped {name}: {err}")
    table = render(rows, args.size, args.classes)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            f"# Model cost (the paper's Table 20)\n\n`python benchmarks/model_cost.py --size "
            f"{args.size} --classes {args.classes}`\n\n{table}\n"
        )


if __name__ == "__main__":
    main()
