"""The markdown page of ``gpu_check.py``: one table per section, ratios side by side."""

from __future__ import annotations


def _num(value, spec: str = ".1f", prefix: str = "") -> str:
    if value is None or isinstance(value, bool):
        return "-" if value is None else ("yes" if value else "no")
    return f"{prefix}{value:{spec}}"


def _crop(crop) -> str:
    return f"{crop[0]}x{crop[1]}"


def _table(header: list[str], rows: list[list[str]], align: str) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _status(section: dict) -> list[str]:
    lines = [f"Status: **{section['status']}**, {section['seconds']:.0f} s of a "
             f"{section['budget_s']:.0f} s budget."]  # fmt: skip
    lines += [f"- {note}" for note in section["notes"]]
    return ["", *lines]


def _header(meta: dict) -> list[str]:
    lines = [f"# SAR on a GPU: {meta['device_name']}", ""]
    if meta["smoke"]:
        lines += [
            f"> **Smoke run on {meta['device']}** (`--smoke`): tiny crops, small models and a "
            "few steps. **These figures mean nothing**; they only show that every section of "
            "the script runs. Run it without `--smoke` on a CUDA GPU for real figures.",
            "",
        ]
    memory = f" ({meta['device_memory_gib']:.0f} GiB)" if meta.get("device_memory_gib") else ""
    lines += [
        f"Measured on **{meta['device_name']}**{memory}, {meta['date']}: torch "
        f"{meta['torch']}, CUDA {meta['cuda'] or '-'}, cuDNN {meta['cudnn'] or '-'}, "
        f"Python {meta['python']}, autocast `{meta['amp']}`. Produced in "
        f"{meta['total_seconds']:.0f} s (budget {meta['budget_s']:.0f} s) by",
        "",
        "```bash",
        meta["command"],
        "```",
        "",
        "All figures are also in the JSON file written with `--out-json`.",
    ]
    return lines


def _models(section: dict, meta: dict) -> list[str]:
    cuda = meta["device"] == "cuda"
    precision = "float32" if meta["amp"] == "fp32" else f"`{meta['amp']}` autocast"
    timer = "CUDA events" if cuda else "the wall clock"
    peak = (
        "`torch.cuda.max_memory_allocated` of one step, each configuration built alone after "
        "`empty_cache` and `reset_peak_memory_stats`"
        if cuda
        else "the process's resident-set high-water mark during one step"
    )
    lines = [
        "## 1. Training step with and without SAR",
        "",
        f"- The step: SGD (lr 0.01, momentum 0.9, weight decay 5e-4) of a registry segmentor "
        f"on random images and labels, batch {meta['batch']}, in {precision}. *CE*: CE, plus "
        "the auxiliary head's CE where the model has one; *CE + SAR*: plus "
        "`build_regularizer('sar', ...)` with the paper's defaults and `validate=False`, as the "
        "training module runs it after its first 10 checked steps; *checked*: the same with "
        "the input checks (a host-device sync) on every step.",
        f"- Time: median over interleaved steps of one model after warm-up ({timer}).",
        f"- Peak: {peak}; weights, optimizer state and activations included.",
        "- Whether SAR's gate is open or closed, the step does the same work (SAR has no "
        "data-dependent branch), so random labels cost what real ones do.",
        "",
    ]
    rows = [
        [f"`{r['model']}`", _crop(r["crop"]), str(r["classes"]), str(r["feat_dim"]),
         _num(r["ce_ms"]), _num(r["sar_ms"]), _num(r["time_ratio"], ".3f", "x"),
         _num(r["sar_checked_ms"]), _num(r["checked_time_ratio"], ".3f", "x"),
         _num(r["ce_peak_mib"], ".0f"), _num(r["sar_peak_mib"], ".0f"),
         _num(r["peak_ratio"], ".3f", "x")]
        for r in section["rows"]
    ]  # fmt: skip
    header = ["model", "crop", "C", "D", "CE ms", "CE + SAR ms", "time ratio",
              "checked ms", "checked ratio", "CE peak MiB", "CE + SAR peak MiB",
              "peak ratio"]  # fmt: skip
    lines += _table(header, rows, ["---"] + ["---:"] * 11) if rows else ["(no rows)"]
    return lines + _status(section)


def _p2a(section: dict) -> list[str]:
    lines = [
        "## 2. The pixel-to-anchor loss against the one-hot formulation",
        "",
        "Forward + backward of `semantic_anchors.functional.pixel_to_anchor_loss` and of the "
        "naive one-hot loss written in `benchmarks/_gpu_measure.py` (a `(B, C, h, w)` one-hot, "
        "anchors gathered by `einsum` into a `(B, D, h, w)` map, masked MSE), float32 features "
        "at 1/8 of the crop, an eighth of the rows ignored. *MiB*: peak memory of the call "
        "beyond what was allocated before it (on CPU: of the resident set), the features' "
        "gradient (*grad MiB*) included. "
        "*agree*: relative difference of the losses and largest gradient difference relative "
        "to the largest gradient.",
        "",
    ]
    rows = [
        [str(r["classes"]), "x".join(map(str, r["features"])), _num(r["naive_ms"], ".2f"),
         _num(r["ours_ms"], ".2f"), _num(r["time_ratio"], ".3f", "x"),
         _num(r["naive_mib"]), _num(r["ours_mib"]), _num(r["memory_ratio"], ".3f", "x"),
         _num(r["grad_mib"]), f"{r['loss_rel_diff']:.1e} / {r['grad_rel_max_diff']:.1e}"]
        for r in section["rows"]
    ]  # fmt: skip
    header = ["C", "features", "one-hot ms", "ours ms", "time ratio", "one-hot MiB",
              "ours MiB", "memory ratio", "grad MiB", "agree (loss / grad)"]  # fmt: skip
    lines += _table(header, rows, ["---"] * 2 + ["---:"] * 8) if rows else ["(no rows)"]
    return lines + _status(section)


def _compiles(row: dict) -> str:
    if row.get("compiles"):
        return "yes"
    return "no" if row.get("stage") == "failed" else f"unfinished ({row.get('stage')})"


def _compile(section: dict) -> list[str]:
    lines = [
        "## 3. `torch.compile` of the model and SAR",
        "",
        "`torch.compile` of the whole training loss (`forward_train`, CE, auxiliary CE, SAR with "
        "`validate=False`); backward and the SGD step stay eager. *graphs* and *graph breaks* "
        "come from Dynamo's counters after the first call (a first pass with the `eager` "
        "backend gives them even when the real compile does not fit the budget); *compile s* "
        "is the first "
        "forward + backward; *agree* is the relative difference of the compiled and eager "
        "losses at the same weights; step times are medians of interleaved steps.",
        "",
    ]
    rows = [
        [f"`{r['model']}`", _crop(r["crop"]), str(r["classes"]), f"`{r['backend']}`",
         _compiles(r), _num(r.get("graphs"), "d"), _num(r.get("graph_breaks"), "d"),
         _num(r.get("compile_s")), _num(r.get("loss_rel_diff"), ".1e"),
         _num(r.get("eager_ms")), _num(r.get("compiled_ms")),
         _num(r.get("speedup"), ".2f", "x"), _num(r.get("recompiled"))]
        for r in section["rows"]
    ]  # fmt: skip
    header = ["model", "crop", "C", "backend", "compiles", "graphs", "graph breaks",
              "compile s", "agree", "eager ms", "compiled ms", "speed-up",
              "recompiled"]  # fmt: skip
    lines += _table(header, rows, ["---"] * 4 + ["---:"] * 9) if rows else ["(no rows)"]
    for r in section["rows"]:
        for key in ("error", "trace_error"):
            if r.get(key):
                lines += ["", f"{key.replace('_', ' ').capitalize()}: `{r[key]}`"]
        if r.get("break_reasons"):
            lines += ["", "Graph breaks:", *[f"- `{reason}`" for reason in r["break_reasons"]]]
    return lines + _status(section)


def _train(section: dict) -> list[str]:
    lines = [
        "## 4. Training through the command line",
        "",
        "A short run of the quick recipe with SAR through `semantic-anchors train`, then the "
        "same with `trainer.strategy=ddp trainer.devices=1` (one process; NCCL on a GPU, gloo on "
        "CPU). Read back from the run folder: `metrics.json` (steps, world size, training time, "
        "final mIoU) and `logs/train/metrics.csv` (`train/loss`; SAR's `reg/gate_open`, "
        "whether the semantic anchors were updated and used at that step). *loss*: mean of the "
        "first and of the last logged losses.",
        "",
    ]
    rows = [
        [r["run"], r["status"], _num(r.get("steps"), "d"), _num(r.get("steps_per_s")),
         f"{_num(r.get('loss_first'), '.3f')} -> {_num(r.get('loss_last'), '.3f')}",
         _num(r.get("loss_decreased")), _num(r.get("gate_opened")),
         _num(r.get("gate_first_open_step"), "d"), _num(r.get("mIoU"), ".2f"),
         _num(r.get("world_size"), "d"), r.get("backend") or "-",
         _num(r.get("nccl_initialised"))]
        for r in section["rows"]
    ]  # fmt: skip
    header = ["run", "status", "steps", "steps/s", "loss", "loss down", "gate opened",
              "first open step", "mIoU", "world size", "backend", "NCCL seen"]  # fmt: skip
    lines += _table(header, rows, ["---"] * 2 + ["---:"] * 10) if rows else ["(no rows)"]
    lines += ["", "Commands:", ""]
    lines += [f"- {r['run']}: `{r['command']}`" for r in section["rows"]]
    lines += [f"- {r['run']}: {r['note']}" for r in section["rows"] if r.get("note")]
    return lines + _status(section)


def render(result: dict) -> str:
    """The whole page from the JSON result of ``gpu_check.py``."""
    meta, sections = result["meta"], result["sections"]
    parts = [_header(meta)]
    for key, fn in (("models", lambda s: _models(s, meta)), ("p2a", _p2a),
                    ("compile", _compile), ("train", _train)):  # fmt: skip
        if key in sections:
            parts.append(fn(sections[key]))
    return "\n\n".join("\n".join(part) for part in parts) + "\n"
