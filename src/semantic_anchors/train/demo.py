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


def run_demo(out_dir: Path = Path("runs/demo"), steps: int | None = None, seed: int = 0) -> dict:
    """Train the quick recipe twice (CE, CE + SAR) and print mIoU and head / body / tail mIoU."""
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
