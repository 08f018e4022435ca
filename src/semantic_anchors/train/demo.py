"""``semantic-anchors demo``: CE against CE + SAR on the embedded ``synthlt`` data, side by side."""

from __future__ import annotations

import math
import time
from pathlib import Path

from semantic_anchors.train.run import train

__all__ = ["run_demo"]

RECIPE = "synthlt-fcn-quick"
ROWS = (("CE", "none"), ("CE + SAR", "sar"))
COLUMNS = ("mIoU", "head_mIoU", "body_mIoU", "tail_mIoU", "aAcc")


def _cell(value) -> str:
    return (
        "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.1f}"
    )


def render_table(results: dict[str, dict]) -> str:
    """A plain-text table of the demo's runs (also used when ``rich`` is absent)."""
    header = f"{'method':10s}" + "".join(f"{c:>11s}" for c in COLUMNS)
    lines = [header, "-" * len(header)]
    for name, metrics in results.items():
        lines.append(f"{name:10s}" + "".join(f"{_cell(metrics.get(c)):>11s}" for c in COLUMNS))
    return "\n".join(lines)


FULL_STEPS = 1500  # the recipe's schedule
QUICK_STEPS = 150
# Measured on 2 idle CPU cores (docs/benchmarks.md): seconds per training step (validations
# included), CE and CE + SAR; the whole demo took 217 s.
SECONDS_PER_STEP = {"none": 0.069, "sar": 0.074}


def estimate_seconds(steps: int) -> float:
    """Rough wall time of the demo on 2 idle CPU cores (training only, plus a few validations)."""
    return steps * sum(SECONDS_PER_STEP.values()) + 10


def run_demo(
    out_dir: Path = Path("runs/demo"), steps: int | None = None, seed: int = 0, quick: bool = False
) -> dict:
    """Train the quick recipe twice (CE, CE + SAR) and print mIoU and head / body / tail mIoU.

    Args:
        out_dir: the folder of the two runs (``none/`` and ``sar/``).
        steps: training steps per run (default: the recipe's 1500, or 150 with ``quick``).
        seed: the experiment seed.
        quick: a short check that everything works (the numbers mean little after 150 steps).
    """
    if steps is None and quick:
        steps = QUICK_STEPS
    total = FULL_STEPS if steps is None else steps
    minutes = estimate_seconds(total) / 60
    print(
        f"demo: fcn_small on synthlt, CE then CE + SAR, {total} steps each: about "
        f"{minutes:.1f} min on 2 idle CPU cores (longer when other jobs share them)"
        + ("" if quick or (steps is not None and steps <= QUICK_STEPS)
           else f"; `semantic-anchors demo --quick` runs {QUICK_STEPS} steps each")
    )  # fmt: skip
    results: dict[str, dict] = {}
    start = time.perf_counter()
    for label, regularizer in ROWS:
        overrides = [f"regularizer.name={regularizer}", f"seed={seed}"]
        if steps is not None:
            overrides += [f"trainer.max_steps={steps}", f"trainer.val_every={steps}"]
        print(f"\n== {label}")
        results[label] = train(RECIPE, overrides, out_dir=Path(out_dir) / regularizer)
    elapsed = time.perf_counter() - start
    table = render_table(results)
    try:
        from rich.console import Console
        from rich.table import Table

        rich_table = Table(title=f"synthlt, fcn_small, seed {seed} (mIoU, %)")
        rich_table.add_column("method")
        for column in COLUMNS:
            rich_table.add_column(column, justify="right")
        for name, metrics in results.items():
            rich_table.add_row(name, *(_cell(metrics.get(c)) for c in COLUMNS))
        Console().print(rich_table)
    except ModuleNotFoundError:
        print(table)
    print(
        f"runs in {out_dir}/ (config.yaml, metrics.json, checkpoints, logs); took {elapsed:.0f} s"
    )
    return results
