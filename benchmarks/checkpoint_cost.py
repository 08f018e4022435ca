"""What a checkpoint costs: wall time of one ``last.ckpt`` save and its size, per recipe.

Each recipe trains a few steps through ``semantic_anchors.train.train`` with a checkpoint every
step (``trainer.checkpoint_every=1``); the save times come from the run's ``metrics.json``
(``checkpoint_seconds``, measured around ``trainer.save_checkpoint``: serialisation, fsync and the
atomic rename), the size from the file. Also the fit time per step of the same run (training
plus one validation, divided by the steps), so the cost reads as a fraction of a step.

Usage::

    python benchmarks/checkpoint_cost.py                        # the CPU quick recipes
    python benchmarks/checkpoint_cost.py --out docs/benchmarks/checkpoint.md
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from semantic_anchors.train import train

CASES = (
    ("synthlt-fcn-quick", "none"),
    ("synthlt-fcn-quick", "sar"),
    ("fashion-scenes-fcn-quick", "sar"),
    ("fashion-lt-smallcnn-quick", "sar"),
)


def measure(recipe: str, regularizer: str, steps: int, folder: Path) -> dict:
    out = folder / f"{recipe}-{regularizer}"
    metrics = train(recipe, [
        f"regularizer.name={regularizer}", f"trainer.max_steps={steps}",
        f"trainer.val_every={steps}", "trainer.checkpoint_every=1", "trainer.progress_bar=false",
        "trainer.limit_val_batches=1", "data.num_workers=0",
    ], out_dir=out)  # fmt: skip
    saves = metrics["checkpoint_seconds"]
    size = (out / "checkpoints" / "last.ckpt").stat().st_size
    return {
        "recipe": recipe, "regularizer": regularizer, "saves": len(saves),
        "save_ms": 1000 * statistics.median(saves), "size_mb": size / 2**20,
        "step_ms": 1000 * metrics["train_seconds"] / steps,
    }  # fmt: skip


def render(rows: list[dict]) -> str:
    lines = [
        "| recipe | regularizer | checkpoint (MB) | save, median (ms) |"
        " fit time per step (ms, one validation included) | save / step |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['recipe']} | {r['regularizer']} | {r['size_mb']:.2f} | {r['save_ms']:.1f} "
            f"| {r['step_ms']:.1f} | {r['save_ms'] / r['step_ms']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12, help="training steps per recipe")
    parser.add_argument("--out", type=Path, help="also write the table as markdown here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        measure(*CASES[0], 3, Path(tmp) / "warm-up")  # imports, allocator, first-step costs
        rows = [measure(recipe, reg, args.steps, Path(tmp)) for recipe, reg in CASES]
    table = render(rows)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            "# Checkpoint cost\n\nMeasured by `python benchmarks/checkpoint_cost.py` "
            f"({args.steps} steps per recipe, one save per step).\n\n{table}\n"
        )


if __name__ == "__main__":
    main()
