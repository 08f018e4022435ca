"""The beyond-the-paper report: text anchors, anchor-aware inference and SAR pre-training.

Reads the bench folders of the ``beyond-text`` and ``beyond-pretrain`` suites, evaluates anchor
fusion (beta in {0, 0.25, 0.5, 1}) on every SAR checkpoint of ``beyond-text`` (cached per run in
``RUN/fusion.json``), and writes ``README.md``, ``results.json`` and ``beyond.png`` with paired
differences over seeds and their 95 % t-intervals:

    semantic-anchors bench beyond-text --out runs/bench/beyond-text
    semantic-anchors bench beyond-pretrain --out runs/bench/beyond-pretrain
    python benchmarks/beyond.py --text runs/bench/beyond-text --pretrain runs/bench/beyond-pretrain \\
        --out docs/results/beyond
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _paired import cell as _cell
from _paired import mean as _mean
from _paired import paired as _paired
from _paired import runs as _runs
from _paired import task as _task

from semantic_anchors.bench.results import read_metrics, summarize_values

BETAS = (0.0, 0.25, 0.5, 1.0)
METRICS = {"segmentation": ("mIoU", "head_mIoU", "body_mIoU", "tail_mIoU"),
           "classification": ("top1", "head_Acc", "body_Acc", "tail_Acc")}  # fmt: skip


def fusion_metrics(run: Path, beta: float) -> dict:
    """The run's validation metrics with ``eval.anchor_fusion=beta`` (cached in the run folder)."""
    from semantic_anchors.train import evaluate

    if beta == 0:  # the plain model, bitwise (tests/test_anchor_inference.py): the run's own eval
        return read_metrics(run)
    cache_file = run / "fusion.json"
    cache = json.loads(cache_file.read_text()) if cache_file.is_file() else {}
    key = f"{beta:g}"
    if key not in cache:
        cache[key] = evaluate(run, [f"eval.anchor_fusion={beta}", "data.num_workers=0"])
        cache_file.write_text(json.dumps(cache, indent=1))
    return cache[key]


def text_section(bench: Path, results: dict) -> list[str]:
    lines = ["## Text anchors against normal anchors", "",
             "SAR with the class names embedded by all-MiniLM-L6-v2 (`regularizer.anchors=text`) "
             "against SAR with the paper's random normal anchors, same recipe and seeds. "
             "Differences `text - normal` per seed: mean [95 % t-interval] (* excludes 0).", ""]  # fmt: skip
    header = "| dataset | metric | normal | text | text - normal | wins |"
    lines += [header, "|---|---|---:|---:|---:|---:|"]
    for dataset in sorted(p.name for p in (bench / "runs").iterdir() if p.is_dir()):
        normal = {s: read_metrics(r) for s, r in _runs(bench, dataset, "sar").items()}
        text = {s: read_metrics(r) for s, r in _runs(bench, dataset, "sar-text").items()}
        if not normal or not text:
            continue
        for key in METRICS[_task(next(iter(normal.values())))]:
            d = _paired(text, normal, key)
            results.setdefault("text", {}).setdefault(dataset, {})[key] = d
            lines.append(f"| {dataset} | {key} | {_mean(normal, key)} | {_mean(text, key)} | "
                         f"{_cell(d)} | {d['wins']} of {len(d['seeds'])} |")  # fmt: skip
    return [*lines, ""]


def fusion_section(bench: Path, results: dict, echo) -> list[str]:
    lines = ["## Anchor-aware inference on the same checkpoints", "",
             "Every SAR checkpoint of the text-anchor suite evaluated again with "
             "`eval.anchor_fusion=beta` (logits + beta * anchor logits, l2, T = D). Differences "
             "from beta = 0 (the plain model: the run's own evaluation) per seed: mean [95 % "
             "t-interval].", ""]  # fmt: skip
    lines += ["| dataset | anchors | metric | " + " | ".join(f"β={b:g}" for b in BETAS[1:]) + " |",
              "|---|---|---|" + "---:|" * (len(BETAS) - 1)]  # fmt: skip
    for dataset in sorted(p.name for p in (bench / "runs").iterdir() if p.is_dir()):
        for method, label in (("sar", "normal"), ("sar-text", "text")):
            runs = _runs(bench, dataset, method)
            if not runs:
                continue
            by_beta: dict[float, dict[int, dict]] = {}
            for beta in BETAS:
                for seed, run in runs.items():
                    start = time.perf_counter()
                    by_beta.setdefault(beta, {})[seed] = fusion_metrics(run, beta)
                    echo(f"fusion {dataset}/{method}/seed{seed} beta={beta:g}: "
                         f"{time.perf_counter() - start:.0f} s")  # fmt: skip
            key = METRICS[_task(next(iter(by_beta[0.0].values())))][0]
            cells = []
            for beta in BETAS[1:]:
                d = _paired(by_beta[beta], by_beta[0.0], key)
                results.setdefault("fusion", {}).setdefault(dataset, {}).setdefault(label, {})[
                    f"{beta:g}"] = d  # fmt: skip
                cells.append(_cell(d))
            lines.append(f"| {dataset} | {label} | {key} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def pretrain_section(bench: Path, results: dict) -> list[str]:
    stage1 = {m: {s: read_metrics(r) for s, r in _runs(bench, "fashion-lt", m).items()}
              for m in ("none", "sar")}  # fmt: skip
    cells = {(pre, fine): {s: read_metrics(r) for s, r in _runs(bench, f"scenes-from-{pre}", fine).items()}
             for pre in ("ce", "sar") for fine in ("none", "sar")}  # fmt: skip
    lines = ["## SAR pre-training: the 2x2 design", "",
             "Stage 1: the small CNN on long-tailed Fashion-MNIST (CE or SAR). Stage 2: the FCN "
             "on long-tailed Fashion-MNIST scenes, its backbone initialised from the same seed's "
             "stage-1 run, trained with CE or SAR.", "",
             f"Stage 1 top-1: CE {_mean(stage1['none'], 'top1')}, SAR {_mean(stage1['sar'], 'top1')} "
             f"(SAR - CE {_cell(_paired(stage1['sar'], stage1['none'], 'top1'))}).", "",
             "| stage 2 mIoU | fine-tune CE | fine-tune SAR |", "|---|---:|---:|",
             f"| pre-trained with CE | {_mean(cells['ce', 'none'], 'mIoU')} | {_mean(cells['ce', 'sar'], 'mIoU')} |",
             f"| pre-trained with SAR | {_mean(cells['sar', 'none'], 'mIoU')} | {_mean(cells['sar', 'sar'], 'mIoU')} |",
             "", "Paired differences of stage-2 mIoU (mean [95 % t-interval]):", "",
             "| comparison | Δ mIoU | Δ tail mIoU | wins |", "|---|---:|---:|---:|"]  # fmt: skip
    base = cells["ce", "none"]
    comparisons = {
        "SAR fine-tuning, CE pre-training (CE-SAR vs CE-CE)": (cells["ce", "sar"], base),
        "SAR pre-training, CE fine-tuning (SAR-CE vs CE-CE)": (cells["sar", "none"], base),
        "both (SAR-SAR vs CE-CE)": (cells["sar", "sar"], base),
        "SAR pre-training under SAR fine-tuning (SAR-SAR vs CE-SAR)": (cells["sar", "sar"], cells["ce", "sar"]),
    }  # fmt: skip
    for name, (a, b) in comparisons.items():
        d, tail = _paired(a, b, "mIoU"), _paired(a, b, "tail_mIoU")
        results.setdefault("pretrain", {})[name] = {"mIoU": d, "tail_mIoU": tail}
        lines.append(f"| {name} | {_cell(d)} | {_cell(tail)} | {d['wins']} of {len(d['seeds'])} |")
    # The interaction: does SAR pre-training add more under SAR fine-tuning than under CE?
    seeds = (
        sorted(set.intersection(*(set(c) for c in cells.values()))) if all(cells.values()) else []
    )
    inter = summarize_values([
        cells["sar", "sar"][s]["mIoU"] - cells["sar", "none"][s]["mIoU"]
        - cells["ce", "sar"][s]["mIoU"] + cells["ce", "none"][s]["mIoU"] for s in seeds
    ])  # fmt: skip
    results.setdefault("pretrain", {})["interaction"] = inter
    lines += ["", f"Interaction (SAR-SAR - SAR-CE - CE-SAR + CE-CE, the 'synergy'): {_cell(inter)} "
              f"mIoU over {inter['n']} seeds.", ""]  # fmt: skip
    return lines


def plot(results: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    for dataset, keys in results.get("text", {}).items():
        first = next(iter(keys))
        rows.append((f"text anchors\n{dataset} {first}", keys[first]))
    for dataset, labels in results.get("fusion", {}).items():
        for label, betas in labels.items():
            rows.append((f"fusion β=0.5\n{dataset} ({label})", betas.get("0.5")))
    for name, d in results.get("pretrain", {}).items():
        if name != "interaction":
            rows.append((name.split(" (")[1].rstrip(")"), d["mIoU"]))
    rows = [(n, d) for n, d in rows if d and d["n"] >= 2]
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(rows) + 1.2))
    for i, (_, d) in enumerate(rows):
        ax.errorbar(d["mean"], i, xerr=d["ci95"], fmt="o", color="tab:blue", capsize=3)
        ax.scatter(d["values"], [i] * len(d["values"]), s=8, color="grey", alpha=0.6, zorder=0)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(range(len(rows)), [n for n, _ in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("paired difference (points), mean and 95 % t-interval; grey: seeds")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text", type=Path, required=True, help="bench folder of beyond-text")
    parser.add_argument("--pretrain", type=Path, help="bench folder of beyond-pretrain")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    start = time.perf_counter()
    lines = ["# Beyond the paper: text anchors, anchor-aware inference, SAR pre-training", "",
             "CPU-scale measurements of the paper's future work (Appendix D.2), 5 seeds, "
             "written by `benchmarks/beyond.py`. A difference counts only when its 95 % interval "
             "excludes 0 (marked *); most do not at this scale, and that is the finding.", ""]  # fmt: skip
    lines += text_section(args.text, results)
    lines += fusion_section(args.text, results, print)
    if args.pretrain is not None:
        lines += pretrain_section(args.pretrain, results)
    plot(results, args.out / "beyond.png")
    if (args.out / "beyond.png").is_file():
        lines += ["![paired differences](beyond.png)", ""]
    lines += [
        "Reproduce:",
        "",
        "```bash",
        *(line[4:] for line in __doc__.splitlines() if line.startswith("    ")),
        "```",
        "",
    ]
    (args.out / "README.md").write_text("\n".join(lines))
    (args.out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    print("\n".join(lines))
    print(f"report written in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
