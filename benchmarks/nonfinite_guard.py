"""What the non-finite policy costs in a training step, measured side by side in one run.

The training module folds the finiteness of every loss part and of the gradients into a
device-side flag each step (``trainer.on_nonfinite: stop``, the default; no host sync), and with
``on_nonfinite: skip`` also copies the buffers and syncs once per step. This script times one
optimizer step of a segmentation model with CE + SAR three ways, interleaved in one process
(median over ``--steps`` rounds):

* ``plain``: forward, loss, backward, optimizer step;
* ``stop``: plus :class:`~semantic_anchors.train.divergence.NonFiniteTracker` updates (loss parts
  and one fused gradient norm), as the default mode runs;
* ``skip``: plus the buffer snapshot and the per-step decision (one sync).

Usage::

    python benchmarks/nonfinite_guard.py                       # fcn_small, 64x64, batch 16
    python benchmarks/nonfinite_guard.py --model fcn_hr18 --crop 256 --batch 2 --steps 10
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from semantic_anchors import SemanticAnchorRegularizer
from semantic_anchors.models import create_model
from semantic_anchors.train.divergence import NonFiniteTracker, snapshot_buffers


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="fcn_small")
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--classes", type=int, default=13)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = create_model(args.model, num_classes=args.classes)
    sar = SemanticAnchorRegularizer(args.classes, model.feat_dim, validate=False)
    params = [*model.parameters(), *sar.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-4)
    images = torch.randn(args.batch, 3, args.crop, args.crop)
    labels = torch.randint(0, args.classes, (args.batch, args.crop, args.crop))
    tracker = NonFiniteTracker()
    holder = torch.nn.ModuleDict({"model": model, "sar": sar})

    def step(mode: str, k: int) -> float:
        start = time.perf_counter()
        if mode == "skip":
            saved = snapshot_buffers(holder)
            tracker.begin_step()
        out = model.forward_train(images)
        ce = F.cross_entropy(out.logits, labels, ignore_index=255)
        reg = sar(out.features, labels, model.classifier)
        loss = ce + reg
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if mode != "plain":
            stats = sar.last_stats_tensors
            tracker.update({"ce": ce, "reg.loss_aux": stats["loss_aux"],
                            "reg.loss_p2a": stats["loss_p2a"]}, k)  # fmt: skip
            tracker.update_grads(params, k)
        if mode == "skip" and tracker.step_is_bad():
            for buffer, value in saved:
                buffer.copy_(value)
        else:
            opt.step()
        return time.perf_counter() - start

    modes = ("plain", "stop", "skip")
    times: dict[str, list[float]] = {m: [] for m in modes}
    for k in range(3):  # warm-up
        for mode in modes:
            step(mode, k)
    for k in range(args.steps):
        for mode in modes if k % 2 == 0 else reversed(modes):
            times[mode].append(step(mode, k))
    med = {m: statistics.median(v) for m, v in times.items()}
    print(f"{args.model}, {args.crop}x{args.crop}, batch {args.batch}, CE + SAR, "
          f"{args.threads} threads, median of {args.steps} interleaved steps")  # fmt: skip
    for mode in modes:
        print(f"  {mode:5s}  {1e3 * med[mode]:8.2f} ms  x{med[mode] / med['plain']:.3f}")
    return med


if __name__ == "__main__":
    main()
