"""Training steps per second of the CPU quick recipes, without and with SAR, side by side.

Each recipe is trained for ``--steps`` steps twice (regularizer none / sar) through the same code
path as ``semantic-anchors train``; the rate is measured from the CSV log's step timestamps after
a warm-up, so dataset generation and start-up are excluded. Also times ``semantic-anchors demo``
end to end when ``--demo`` is given.

    python benchmarks/train_throughput.py --steps 200 --demo --out docs/benchmarks/train.md
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

from semantic_anchors.train import train

RECIPES = ("synthlt-fcn-quick", "fashion-scenes-fcn-quick", "fashion-lt-smallcnn-quick")


class StepTimer(L.Callback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_batch_end(self, *args) -> None:
        self.times.append(time.perf_counter())


def steps_per_second(recipe: str, regularizer: str, steps: int, workdir: Path) -> float:
    timer = StepTimer()
    train(
        recipe,
        [f"regularizer.name={regularizer}", f"trainer.max_steps={steps}",
         f"trainer.val_every={steps}", "trainer.limit_val_batches=1", "trainer.progress_bar=false"],
        out_dir=workdir / f"{recipe}-{regularizer}",
        callbacks=[timer],
    )  # fmt: skip
    warm = min(10, len(timer.times) // 4)
    gaps = [b - a for a, b in zip(timer.times[warm:], timer.times[warm + 1 :], strict=False)]
    return 1.0 / statistics.median(gaps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES))
    parser.add_argument("--demo", action="store_true", help="also time `semantic-anchors demo`")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    lines = [
        f"# Training throughput (torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{args.steps} steps)",
        "",
        "| recipe | CE steps/s | CE+SAR steps/s | SAR time ratio |",
        "|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for recipe in args.recipes:
            base = steps_per_second(recipe, "none", args.steps, Path(tmp))
            sar = steps_per_second(recipe, "sar", args.steps, Path(tmp))
            lines.append(f"| {recipe} | {base:.2f} | {sar:.2f} | x{base / sar:.3f} |")
            print(lines[-1], flush=True)
        if args.demo:
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "semantic_anchors.cli", "demo", "--out", f"{tmp}/demo"],
                check=True, capture_output=True,
            )  # fmt: skip
            lines += [
                "",
                f"`semantic-anchors demo` end to end: {time.perf_counter() - start:.0f} s",
            ]
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
