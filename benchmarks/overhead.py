"""What SAR costs in a segmentation training step, measured side by side in one run.

Prints (and with ``--out`` writes as markdown):

1. the step time of a segmentation model trained with CE and with CE + SAR (steps interleaved
   in one process, median of ``--steps``), and the peak memory of each (fresh process each);
2. the memory and time of the pixel-to-anchor term alone, ours against a naive one-hot
   implementation (the authors' formulation: a ``(B, C, h, w)`` one-hot, a dense
   ``(B, D, h, w)`` anchor map and an unreduced MSE map), at C=19 and C=150.

Targets (issue 2): step time x1.02 or less, peak memory x1.05 or less, and at C=150 the p2a
term's memory at most a third of the naive one.

Usage::

    python benchmarks/overhead.py                     # fcn_r50_d8, 512x512 crop, batch 2
    python benchmarks/overhead.py --crop 256 --steps 3 --out docs/benchmarks/overhead.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _memory import measure_peak, run_isolated  # noqa: E402

from semantic_anchors import SemanticAnchorRegularizer  # noqa: E402
from semantic_anchors.functional import pixel_to_anchor_loss, resize_labels  # noqa: E402

IGNORE = 255


def naive_p2a(features, labels, anchors, num_classes):
    """The one-hot formulation: one-hot labels @ anchors -> dense target map -> masked MSE."""
    b, d, h, w = features.shape
    valid = (labels != IGNORE)[:, None]  # (B, 1, h, w)
    index = torch.where(labels < num_classes, labels, num_classes)[:, None]  # (B, 1, h, w)
    one_hot = torch.zeros(b, num_classes + 1, h, w, device=features.device)  # (B, C+1, h, w)
    one_hot.scatter_(1, index, 1.0)
    target = one_hot[:, :num_classes].permute(0, 2, 3, 1) @ anchors  # (B, h, w, D)
    mse = F.mse_loss(features, target.permute(0, 3, 1, 2), reduction="none")  # (B, D, h, w)
    return (mse * valid).sum() / d / valid.sum()


def make_labels(batch, size, num_classes, device):
    labels = torch.randint(0, num_classes, (batch, size, size), device=device)
    labels[:, : size // 8] = IGNORE  # some ignored rows, as in real crops
    return labels


# ---------------------------------------------------------------------------- workers
def worker_p2a(args) -> dict:
    device = torch.device(args.device)
    c, d, size = args.classes_one, args.feat_dim, args.crop
    h = size // 8
    features = torch.rand(args.batch, d, h, h, device=device, requires_grad=True)
    labels = resize_labels(make_labels(args.batch, size, c, device), (h, h))
    anchors = torch.randn(c, d, device=device)

    def run():
        if args.variant == "ours":
            loss = pixel_to_anchor_loss(features, labels, anchors, labels != IGNORE)
        else:
            loss = naive_p2a(features, labels, anchors, c)
        loss.backward()
        features.grad = None

    run()  # warm-up
    mem = measure_peak(run, device)
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return {**mem, "time_s": statistics.median(times)}


def build_step(args, num_classes, use_sar):
    from semantic_anchors.models import create_model

    device = torch.device(args.device)
    model = create_model(args.model, num_classes=num_classes).to(device).train()
    params = list(model.parameters())
    sar = None
    if use_sar:
        sar = SemanticAnchorRegularizer(num_classes, model.feat_dim).to(device).train()
        params += list(sar.parameters())
    optimizer = torch.optim.SGD(params, lr=1e-3, momentum=0.9, weight_decay=5e-4)
    images = torch.randn(args.batch, 3, args.crop, args.crop, device=device)
    labels = make_labels(args.batch, args.crop, num_classes, device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        out = model.forward_train(images)
        loss = F.cross_entropy(out.logits, labels, ignore_index=IGNORE)
        if out.aux_logits is not None:
            loss = loss + model.aux_loss_weight * F.cross_entropy(
                out.aux_logits, labels, ignore_index=IGNORE
            )
        if sar is not None:
            loss = loss + sar(out.features, labels, model.classifier)
        loss.backward()
        optimizer.step()

    return step


def worker_step_memory(args) -> dict:
    step = build_step(args, args.classes_one, args.variant == "sar")
    step()  # warm-up: optimizer state and allocator settle
    return measure_peak(step, torch.device(args.device))


# ---------------------------------------------------------------------------- driver
def step_times(args, num_classes) -> tuple[float, float]:
    """Median step time without and with SAR, steps interleaved to share machine noise."""
    torch.manual_seed(0)
    base, with_sar = build_step(args, num_classes, False), build_step(args, num_classes, True)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    for fn in (base, with_sar):
        fn()
    t_base, t_sar = [], []
    for _ in range(args.steps):
        for fn, sink in ((base, t_base), (with_sar, t_sar)):
            sync()
            start = time.perf_counter()
            fn()
            sync()
            sink.append(time.perf_counter() - start)
    return statistics.median(t_base), statistics.median(t_sar)


def worker_args(args, classes, variant) -> list[str]:
    return [
        json.dumps(
            {**vars(args), "classes_one": classes, "variant": variant, "worker": None, "out": None}
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="fcn_r50_d8")
    parser.add_argument("--crop", type=int, default=512)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--feat-dim", type=int, default=512)
    parser.add_argument("--classes", type=int, nargs="+", default=[19, 150])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--skip-model", action="store_true", help="only the p2a-term benchmark")
    parser.add_argument("--out", type=Path, help="also write the tables as markdown here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        worker = argparse.Namespace(**json.loads(args.worker))
        fn = worker_step_memory if worker.variant in ("ce", "sar") else worker_p2a
        print(json.dumps(fn(worker)))
        return

    script = str(Path(__file__).resolve())
    lines = [
        f"# SAR overhead ({args.device}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads)",
        "",
        f"Features D={args.feat_dim} at 1/8 of a {args.crop}x{args.crop} crop, batch {args.batch}.",
        "",
        "## Pixel-to-anchor term alone (forward + backward)",
        "",
        "| C | naive MiB | ours MiB | memory ratio | naive ms | ours ms |",
        "|---|---|---|---|---|---|",
    ]
    for c in args.classes:
        naive = run_isolated(script, worker_args(args, c, "naive"))
        ours = run_isolated(script, worker_args(args, c, "ours"))
        lines.append(
            f"| {c} | {naive['extra_mib']:.1f} | {ours['extra_mib']:.1f} | "
            f"x{ours['extra_mib'] / naive['extra_mib']:.3f} | {naive['time_s'] * 1e3:.1f} | "
            f"{ours['time_s'] * 1e3:.1f} |"
        )
        print(lines[-1], flush=True)
    if not args.skip_model:
        lines += [
            "",
            f"## Training step of `{args.model}` (SGD, CE + aux CE), without and with SAR",
            "",
            "| C | CE s/step | CE+SAR s/step | time ratio | CE peak MiB | CE+SAR peak MiB | "
            "peak ratio |",
            "|---|---|---|---|---|---|---|",
        ]
        for c in args.classes:
            t_base, t_sar = step_times(args, c)
            m_base = run_isolated(script, worker_args(args, c, "ce"))
            m_sar = run_isolated(script, worker_args(args, c, "sar"))
            lines.append(
                f"| {c} | {t_base:.3f} | {t_sar:.3f} | x{t_sar / t_base:.3f} | "
                f"{m_base['peak_mib']:.0f} | {m_sar['peak_mib']:.0f} | "
                f"x{m_sar['peak_mib'] / m_base['peak_mib']:.3f} |"
            )
            print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
