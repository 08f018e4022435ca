"""The paper's two-stage tables at CPU scale, read from their bench folders.

Tab. 3 (SAR + DisAlign, segmentation) and Tab. 10 (MiSLAS + SAR, classification) combine a
stage-1 run with a stage-2 run trained from it, so their cells live in different datasets of the
suite. This script puts the cells side by side and pairs them seed by seed (mean [95 %
t-interval], * when it excludes 0):

    semantic-anchors bench paper-tab3 --out runs/bench/paper-tab3 --reuse-from runs/bench/paper-tab5
    python benchmarks/paper_tables.py tab3 --bench runs/bench/paper-tab3 --out docs/results/paper-tab3
    semantic-anchors bench paper-tab10 --out runs/bench/paper-tab10
    python benchmarks/paper_tables.py tab10 --bench runs/bench/paper-tab10 --out docs/results/paper-tab10
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _paired import cell, mean, paired, runs

from semantic_anchors.bench.provenance import code_summary, describe_code, run_provenance
from semantic_anchors.bench.results import read_metrics
from semantic_anchors.bench.verdict import verdict

TABLES = {
    "tab3": {
        "title": "Paper Tab. 3 at CPU scale: SAR + DisAlign on fashion-scenes-lt",
        "paper": "Tab. 3 (ADE20K, HRNet): CE + DA and SAR + DA both above their stage 1; "
        "SAR + DA the best.",
        "metrics": ("mIoU", "head_mIoU", "body_mIoU", "tail_mIoU"),
        "cells": {
            "CE": "scenes/none",
            "SAR": "scenes/sar",
            "CE + DA": "da-from-ce/none",
            "SAR + DA": "da-from-sar/none",
        },  # fmt: skip
        "pairs": [
            ("SAR", "CE"),
            ("CE + DA", "CE"),
            ("SAR + DA", "SAR"),
            ("SAR + DA", "CE + DA"),
            ("SAR + DA", "CE"),
        ],  # fmt: skip
    },
    "tab10": {
        "title": "Paper Tab. 10 at CPU scale: MiSLAS + SAR on Fashion-MNIST-LT (IF 100)",
        "paper": "Tab. 10 (CIFAR-100-LT only, ResNet-32, top-1): mixup stage 1 39.5 -> "
        "MiSLAS 47.0; mixup + SAR 40.6 -> MiSLAS 48.0, +1.0 over MiSLAS.",
        "metrics": ("top1", "head_Acc", "body_Acc", "tail_Acc"),
        "cells": {
            "stage 1 (mixup)": "stage1/none",
            "stage 1 + SAR": "stage1/sar",
            "MiSLAS": "stage2-from-ce/none",
            "MiSLAS + SAR": "stage2-from-sar/none",
        },  # fmt: skip
        "pairs": [
            ("stage 1 + SAR", "stage 1 (mixup)"),
            ("MiSLAS", "stage 1 (mixup)"),
            ("MiSLAS + SAR", "stage 1 + SAR"),
            ("MiSLAS + SAR", "MiSLAS"),
        ],  # fmt: skip
    },
}


def build(table: dict, bench: Path) -> tuple[list[str], dict]:
    values = {}
    for label, where in table["cells"].items():
        dataset, method = where.split("/")
        values[label] = {s: read_metrics(r) for s, r in runs(bench, dataset, method).items()}
    keys = table["metrics"]
    lines = [f"# {table['title']}", "", f"The paper: {table['paper']}", "",
             "| cell | run | seeds | " + " | ".join(keys) + " |",
             "|---|---|---:|" + "---:|" * len(keys)]  # fmt: skip
    for label, where in table["cells"].items():
        cells = " | ".join(mean(values[label], k) for k in keys)
        lines.append(f"| {label} | `{where}` | {len(values[label])} | {cells} |")
    lines += ["", "Seed-by-seed differences, mean [95 % t-interval] (* excludes 0); the verdict "
              f"is worded by the {keys[0]} interval alone (\"significantly\" only where it excludes "
              "0):", "",
              "| comparison | " + " | ".join(f"Δ {k}" for k in keys) + " | wins | verdict |",
              "|---|" + "---:|" * (len(keys) + 1) + "---|"]  # fmt: skip
    results: dict = {"cells": {k: {s: m for s, m in v.items()} for k, v in values.items()}}
    for a, b in table["pairs"]:
        diffs = {k: paired(values[a], values[b], k) for k in keys}
        results.setdefault("pairs", {})[f"{a} - {b}"] = diffs
        first = diffs[keys[0]]
        lines.append(f"| {a} − {b} | " + " | ".join(cell(diffs[k]) for k in keys)
                     + f" | {first['wins']} of {len(first['seeds'])} | {verdict(first)} |")  # fmt: skip
    seeds = sorted({s for v in values.values() for s in v})
    lines += ["", f"Per seed, {keys[0]}:", "",
              "| cell | " + " | ".join(f"seed {s}" for s in seeds) + " |",
              "|---|" + "---:|" * len(seeds)]  # fmt: skip
    for label, per_seed in values.items():
        lines.append(f"| {label} | " + " | ".join(
            f"{per_seed[s][keys[0]]:.2f}" if s in per_seed else "–" for s in seeds) + " |")  # fmt: skip
    for a, b in table["pairs"]:
        d = dict(zip(results["pairs"][f"{a} - {b}"][keys[0]]["seeds"],
                     results["pairs"][f"{a} - {b}"][keys[0]]["values"], strict=False))  # fmt: skip
        lines.append(f"| Δ {a} − {b} | " + " | ".join(
            f"{d[s]:+.2f}" if s in d else "–" for s in seeds) + " |")  # fmt: skip
    code = code_summary([run_provenance(r) for label, where in table["cells"].items()
                         for r in runs(bench, *where.split("/")).values()])  # fmt: skip
    results["code"] = code
    lines += ["", f"Code: {describe_code(code)}."]
    return lines, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", choices=sorted(TABLES))
    parser.add_argument("--bench", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    lines, results = build(TABLES[args.table], args.bench)
    commands = [line[4:] for line in __doc__.splitlines() if line.startswith("    ")]
    lines += ["", "Reproduce:", "", "```bash",
              *(c for c in commands if args.table in c.split()[2:4] or f"paper-{args.table}" in c),
              "```", ""]  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "README.md").write_text("\n".join(lines))
    (args.out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
