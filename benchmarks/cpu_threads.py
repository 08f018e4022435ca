"""CPU threads and load: training steps per second of the demo's runs, side by side in one run.

For CE and CE + SAR on the demo's recipe (``synthlt-fcn-quick``, data workers as in the recipe),
each with 1 and with all cores' worth of intra-op threads, on an idle machine and with a busy
process on every core but one (``--load``): the situation of the demo running beside other jobs.
Also the number of operators one training step runs, the cause of the slowdown: every operator is
a parallel region whose threads wait for each other, and on oversubscribed cores a waiting thread
loses its core.

Usage::

    python benchmarks/cpu_threads.py --steps 60
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path

import torch

from semantic_anchors.train import train


def _burn(stop) -> None:
    x = 0
    while not stop.is_set():
        x = (x * 31 + 7) % 1_000_003


def steps_per_second(regularizer: str, threads: int, steps: int, folder: Path) -> float:
    out = folder / f"{regularizer}-{threads}-{time.monotonic_ns()}"
    metrics = train("synthlt-fcn-quick", [
        f"regularizer.name={regularizer}", f"trainer.threads={threads}",
        f"trainer.max_steps={steps}", f"trainer.val_every={steps}", "trainer.limit_val_batches=1",
        "trainer.progress_bar=false", "trainer.checkpoint_minutes=null",
    ], out_dir=out)  # fmt: skip
    return steps / metrics["train_seconds"]


def count_ops(regularizer: str) -> int:
    """Operators dispatched by one forward + backward of the demo's model (and SAR)."""
    from torch.profiler import ProfilerActivity, profile

    from semantic_anchors.models import create_model
    from semantic_anchors.regularizers.registry import build_regularizer

    torch.manual_seed(0)
    model = create_model("fcn_small", num_classes=13, in_channels=3)
    reg = build_regularizer(regularizer, 13, model.feat_dim, dense=True)
    images, labels = torch.randn(16, 3, 64, 64), torch.randint(0, 13, (16, 64, 64))
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        out = model.forward_train(images)
        loss = torch.nn.functional.cross_entropy(out.logits, labels)
        if reg is not None:
            loss = loss + reg(out.features, labels, model.classifier)
        loss.backward()
    return sum(1 for e in prof.events() if e.name.startswith("aten::"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        steps_per_second("none", 1, 5, Path(tmp))  # warm-up
        for load in (False, True):
            stop = mp.Event()
            burners = [mp.Process(target=_burn, args=(stop,)) for _ in range(max(1, cores - 1))]
            if load:
                for p in burners:
                    p.start()
            try:
                for threads in sorted({1, cores}):
                    for reg in ("none", "sar"):
                        rows.append((load, threads, reg, steps_per_second(reg, threads, args.steps,
                                                                          Path(tmp))))  # fmt: skip
            finally:
                stop.set()
                for p in burners:
                    if p.is_alive():
                        p.join()
    print(f"{cores} cores; {args.steps} steps per run; data workers as in the recipe (2)")
    print("| machine | threads | CE steps/s | CE + SAR steps/s | SAR / CE |")
    print("|---|---:|---:|---:|---:|")
    table = {(load, t, r): v for load, t, r, v in rows}
    for load in (False, True):
        for threads in sorted({1, cores}):
            ce, sar = table[(load, threads, "none")], table[(load, threads, "sar")]
            name = f"{cores - 1} busy processes" if load else "idle"
            print(f"| {name} | {threads} | {ce:.1f} | {sar:.1f} | x{sar / ce:.2f} |")
    print(f"operators per training step: CE {count_ops('none')}, CE + SAR {count_ops('sar')}")


if __name__ == "__main__":
    main()
