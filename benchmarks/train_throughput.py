"""Training steps per second: our Lightning training against a bare PyTorch loop, without and
with SAR, side by side in one run.

For each recipe and regularizer (none / sar) the same model, loss, regularizer, optimizer, poly
schedule, data pipeline (the recipe's DataLoader, its workers and batch) and torch thread count
are trained twice: through ``semantic_anchors.train.train`` (what ``semantic-anchors train`` runs:
Lightning, run folder, CSV log, checkpoints) and through a plain ``for batch in loader`` loop
(examples/ style: forward, loss, backward, step). Validation is kept out of the timed window
(one validation at the end). The rate is the median step interval after a warm-up; the runs of
one recipe alternate ``--repeats`` times so that drift on a shared machine hits both alike.

    python benchmarks/train_throughput.py --steps 200 --out docs/benchmarks/train.md
    python benchmarks/train_throughput.py --steps 12 --repeats 1 --recipes synthlt-fcn-quick  # smoke
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
from semantic_anchors.train.config import load_config
from semantic_anchors.train.data import AnchorDataModule
from semantic_anchors.train.module import AnchorModule
from semantic_anchors.train.run import intra_op_threads

RECIPES = ("synthlt-fcn-quick", "fashion-scenes-fcn-quick", "fashion-lt-smallcnn-quick")


def _overrides(regularizer: str, steps: int) -> list[str]:
    return [
        f"regularizer.name={regularizer}", f"trainer.max_steps={steps}",
        f"trainer.val_every={steps}", "trainer.limit_val_batches=1", "trainer.progress_bar=false",
    ]  # fmt: skip


def _rate(times: list[float]) -> float:
    """Steps per second from per-step end times: median interval after a warm-up."""
    warm = min(10, len(times) // 4)
    gaps = [b - a for a, b in zip(times[warm:], times[warm + 1 :], strict=False)]
    return 1.0 / statistics.median(gaps)


class StepTimer(L.Callback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_batch_end(self, *args) -> None:
        self.times.append(time.perf_counter())


def lightning_rate(recipe: str, regularizer: str, steps: int, workdir: Path) -> float:
    """Steps/s of ``semantic-anchors train`` (the project's training, end to end)."""
    timer = StepTimer()
    out = workdir / f"{recipe}-{regularizer}-{time.monotonic_ns()}"
    train(recipe, _overrides(regularizer, steps), out_dir=out, callbacks=[timer])
    return _rate(timer.times)


def bare_rate(recipe: str, regularizer: str, steps: int) -> float:
    """Steps/s of a plain PyTorch loop over the same pieces (no Lightning, no files)."""
    config = load_config(recipe, _overrides(regularizer, steps))
    previous = torch.get_num_threads()
    torch.set_num_threads(intra_op_threads(config))  # as train() does
    try:
        L.seed_everything(int(config["seed"]), workers=True, verbose=False)
        dm = AnchorDataModule(config["data"], int(config["seed"]))
        module = AnchorModule(config, dm.info())  # its model, loss, regularizer, optimizer
        setup = module.configure_optimizers()
        optimizer, scheduler = setup["optimizer"], setup["lr_scheduler"]["scheduler"]
        model, criterion, reg = module.model, module.criterion, module.regularizer
        model.train()
        times: list[float] = []
        for step, (images, targets) in enumerate(dm.train_dataloader()):
            if step == steps:
                break
            out = model.forward_train(images)
            loss = criterion(out.logits, targets)
            if out.aux_logits is not None and model.aux_loss_weight > 0:
                loss = loss + model.aux_loss_weight * criterion(out.aux_logits, targets)
            if reg is not None:
                loss = loss + reg(out.features, targets, model.classifier)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            times.append(time.perf_counter())
        return _rate(times)
    finally:
        torch.set_num_threads(previous)


def measure(recipe: str, steps: int, repeats: int, workdir: Path) -> dict[str, float]:
    """Median over ``repeats`` alternating runs of each of the four configurations."""
    runs: dict[str, list[float]] = {}
    for _ in range(repeats):
        for reg in ("none", "sar"):
            runs.setdefault(f"bare-{reg}", []).append(bare_rate(recipe, reg, steps))
            runs.setdefault(f"ours-{reg}", []).append(lightning_rate(recipe, reg, steps, workdir))
    return {key: statistics.median(values) for key, values in runs.items()}


def table(results: dict[str, dict[str, float]]) -> list[str]:
    lines = [
        "| recipe | regularizer | bare loop steps/s | ours steps/s | ours / bare time | "
        "SAR time ratio (ours) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for recipe, r in results.items():
        for reg in ("none", "sar"):
            bare, ours = r[f"bare-{reg}"], r[f"ours-{reg}"]
            sar_ratio = f"x{r['ours-none'] / r['ours-sar']:.3f}" if reg == "sar" else ""
            lines.append(
                f"| {recipe} | {reg} | {bare:.2f} | {ours:.2f} | x{bare / ours:.3f} | {sar_ratio} |"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES))
    parser.add_argument("--demo", action="store_true", help="also time `semantic-anchors demo`")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.steps < 8:
        parser.error("--steps must be >= 8 (a warm-up, then timed intervals)")
    header = [
        f"# Training throughput (torch {torch.__version__}, {args.steps} steps, median of "
        f"{args.repeats} alternating runs)",
        "",
        "`ours / bare time` is the step time of `semantic-anchors train` over that of a plain "
        "PyTorch loop on the same model, data loader, optimizer and threads (x1.00: no "
        "framework overhead).",
        "",
    ]
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for recipe in args.recipes:
            results[recipe] = measure(recipe, args.steps, args.repeats, Path(tmp))
            print("\n".join(table({recipe: results[recipe]})[2:]), flush=True)
        lines = header + table(results)
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
