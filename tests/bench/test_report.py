import csv
import itertools
import json
import math

import numpy as np
import pytest
import torch
import yaml

from semantic_anchors.bench import build_results, pairwise_consistency, write_report
from semantic_anchors.cli import main
from tests._helpers.fabricate import (
    CLASS_NAMES,
    FREQUENCIES,
    fabricate_bench,
    fabricate_diagnostics,
)

KEYS = ("mIoU", "head_mIoU", "body_mIoU", "tail_mIoU", "mAcc", "aAcc")


def _np_mean_std(values):
    values = np.asarray(values, dtype=float)
    return values.mean(), (values.std(ddof=1) if len(values) > 1 else np.nan)


def test_mean_and_std_over_seeds_match_numpy(tmp_path):
    runs = fabricate_bench(tmp_path, methods=("sar", "none"), missing={("sar", 2)})
    results, _ = build_results(tmp_path, diagnostics=False)
    ds = results["datasets"]["toy"]
    assert ds["task"] == "segmentation" and ds["primary"] == "mIoU"
    assert list(ds["methods"]) == ["sar", "none"]  # the suite's order
    for method in ("none", "sar"):
        got = ds["methods"][method]
        seeds = [s for s in (0, 1, 2) if (method, s) in runs]
        assert got["seeds"] == seeds
        assert got["missing_seeds"] == ([2] if method == "sar" else [])
        for key in KEYS:
            mean, std = _np_mean_std([runs[(method, s)][key] for s in seeds])
            assert got["metrics"][key]["mean"] == pytest.approx(mean)
            assert got["metrics"][key]["std"] == pytest.approx(std)
            assert got["metrics"][key]["n"] == len(seeds)
        table = np.array(
            [[np.nan if v is None else v for v in runs[(method, s)]["IoU"]] for s in seeds]
        )
        expected = np.nanmean(table, axis=0)
        np.testing.assert_allclose(got["per_class"]["mean"], expected)
        assert got["per_class"]["n"] == list(np.isfinite(table).sum(0))
        minutes = [runs[(method, s)]["train_seconds"] / 60 for s in seeds]
        assert got["train_minutes"]["mean"] == pytest.approx(np.mean(minutes))


def test_paired_differences_against_the_baseline_by_hand(tmp_path):
    runs = fabricate_bench(tmp_path, methods=("none", "sar", "cr"), missing={("sar", 1)})
    suite = yaml.safe_load((tmp_path / "suite.yaml").read_text())
    suite["methods"]["cr"]["baseline"] = "sar"
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(suite, sort_keys=False))
    results, _ = build_results(tmp_path, diagnostics=False)
    methods = results["datasets"]["toy"]["methods"]
    assert "vs_baseline" not in methods["none"]  # the default baseline is the first method
    sar = methods["sar"]["vs_baseline"]
    assert sar["baseline"] == "none" and sar["seeds"] == [0, 2]  # only the seeds both have
    for key in KEYS[:4]:
        d = [runs[("sar", s)][key] - runs[("none", s)][key] for s in (0, 2)]
        assert sar["metrics"][key]["values"] == pytest.approx(d)
        assert sar["metrics"][key]["mean"] == pytest.approx((d[0] + d[1]) / 2)
        assert sar["metrics"][key]["std"] == pytest.approx(abs(d[0] - d[1]) / 2**0.5)
    wins = sum(runs[("sar", s)]["mIoU"] > runs[("none", s)]["mIoU"] for s in (0, 2))
    assert sar["wins"] == wins
    cr = methods["cr"]["vs_baseline"]
    assert cr["baseline"] == "sar" and cr["seeds"] == [0, 2]
    text = write_report(tmp_path, plots=False, diagnostics=False).read_text()
    section = text[text.index("### Against the baseline") : text.index("### Per class")]
    mean, std = sar["metrics"]["mIoU"]["mean"], sar["metrics"]["mIoU"]["std"]
    row = next(line for line in section.splitlines() if line.startswith("| `sar` |"))
    assert f"| `none` | {mean:+.1f} ± {std:.1f} |" in row
    half = 12.7062 * std / 2**0.5  # t(0.975, 1 df) * std / sqrt(2 seeds)
    interval = f"[{mean - half:+.1f}, {mean + half:+.1f}]"
    significant = mean - half > 0 or mean + half < 0
    assert not significant  # two random seeds this far apart: the interval is wide
    words = f"ahead on {wins} of 2" if wins >= 2 - wins else f"behind on {2 - wins} of 2"
    assert row.endswith(f"| {interval} | {wins} of 2 | {words} seeds, interval includes 0 |")
    assert "beyond std" not in text and "significantly" not in section.split("| method")[1]
    assert "| `cr` | `sar` |" in section
    header = next(line for line in section.splitlines() if line.startswith("| method"))
    assert header.count("|") == row.count("|") == 10  # no stray pipes in the cells
    per_seed = text[text.index("### Per seed") : text.index("### Per class")]
    sar_row = next(line for line in per_seed.splitlines() if line.startswith("| `sar` |"))
    assert sar_row.startswith(f"| `sar` | {runs[('sar', 0)]['mIoU']:.2f} | – | ")
    delta_row = per_seed.splitlines()[per_seed.splitlines().index(sar_row) + 1]
    d0 = runs[("sar", 0)]["mIoU"] - runs[("none", 0)]["mIoU"]
    assert delta_row.startswith(f"| Δ vs `none` | {d0:+.2f} |  | ")


def test_classification_benches_use_top1_and_accuracy(tmp_path):
    runs = fabricate_bench(tmp_path, methods=("ce",), seeds=(0, 1), task="classification")
    results, _ = build_results(tmp_path, diagnostics=False)
    ds = results["datasets"]["toy"]
    assert ds["primary"] == "top1" and ds["per_class_key"] == "Acc"
    got = ds["methods"]["ce"]["metrics"]["tail_Acc"]
    assert got["mean"] == pytest.approx(np.mean([runs[("ce", s)]["tail_Acc"] for s in (0, 1)]))


def _np_consistency(a, b):
    """Pearson correlation of the upper-triangle centre distances, written out with numpy."""

    def upper(x):
        d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
        return d[np.triu_indices(len(x), 1)]

    return np.corrcoef(upper(a), upper(b))[0, 1]


def test_relationship_consistency_is_wired_to_centres_and_semantic_anchors(tmp_path):
    fabricate_bench(tmp_path, methods=("none", "sar"), seeds=(0, 1, 2))
    gen = torch.Generator().manual_seed(1)
    base = torch.randn(5, 8, generator=gen, dtype=torch.float64)
    centres, anchors = {}, {}
    for seed in (0, 1, 2):
        for method in ("none", "sar"):
            run = tmp_path / "runs" / "toy" / method / f"seed{seed}"
            centres[(method, seed)] = base + 0.5 * torch.randn(
                5, 8, generator=gen, dtype=torch.float64
            )
            anchors[seed] = 3 * base + seed  # same relationships, other scale / offset: 1.0
            fabricate_diagnostics(run, centres[(method, seed)],
                                  anchors[seed] if method == "sar" else None, seed)  # fmt: skip
    results, _ = build_results(tmp_path)
    methods = results["datasets"]["toy"]["methods"]
    for method in ("none", "sar"):
        expected = [_np_consistency(centres[(method, i)].numpy(), centres[(method, j)].numpy())
                    for i, j in itertools.combinations((0, 1, 2), 2)]  # fmt: skip
        got = methods[method]["consistency"]["centres"]
        assert got["pairs"] == 3
        assert got["mean"] == pytest.approx(np.mean(expected))
        assert got["std"] == pytest.approx(np.std(expected, ddof=1))
    assert "regularizer_vectors" not in methods["none"]["consistency"]
    sar = methods["sar"]["consistency"]["regularizer_vectors"]
    assert sar["mean"] == pytest.approx(1.0) and sar["name"] == "semantic anchors"
    diag = methods["sar"]["diagnostics"]
    assert diag["fisher_ratio"]["mean"] == pytest.approx(np.mean([0.5, 1.0, 1.5]))
    assert diag["min_distance"]["std"] == pytest.approx(1.0)


def test_pairs_with_nan_rows_and_single_runs():
    a = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0], [float("nan"), 1.0]])
    b = 2 * a + 1
    assert pairwise_consistency([a, b])["mean"] == pytest.approx(1.0)
    single = pairwise_consistency([a])
    assert single["pairs"] == 0 and single["n"] == 0


def test_report_files(tmp_path):
    mpimg = pytest.importorskip("matplotlib.image")
    fabricate_bench(tmp_path, missing={("sar", 2)})
    for seed in (0, 1, 2):
        fabricate_diagnostics(
            tmp_path / "runs/toy/none" / f"seed{seed}", torch.randn(5, 4), seed=seed
        )
    report = write_report(tmp_path, embedding="pca")
    text = report.read_text()
    assert text.startswith("# Benchmark `fab`")
    assert "| `sar` |" in text and "| 2 of 3 |" in text
    # per-class rows are sorted by training frequency, most frequent first
    order = [text.index(f"| {CLASS_NAMES[c]} |") for c in np.argsort(-np.array(FREQUENCIES))]
    assert order == sorted(order)
    for png in ("toy-per-class.png", "toy-embedding.png", "toy-centre-similarity.png"):
        assert f"(plots/{png})" in text
        assert mpimg.imread(tmp_path / "plots" / png).shape[0] > 100
    assert "semantic-anchors train x --out" in text  # the exact commands
    with open(tmp_path / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    miou = [
        r for r in rows if (r["method"], r["section"], r["metric"]) == ("sar", "overall", "mIoU")
    ]
    assert len(miou) == 1 and miou[0]["n"] == "2"
    assert any(r["metric"] == "IoU:square" for r in rows)
    data = json.loads((tmp_path / "results.json").read_text())  # strict JSON: NaN became null
    assert data["datasets"]["toy"]["methods"]["sar"]["consistency"]["centres"]["mean"] is None


def test_report_command_on_a_fabricated_bench(tmp_path, capsys):
    fabricate_bench(tmp_path / "bench", seeds=(0, 1))
    code = main(
        ["report", str(tmp_path / "bench"), "--report-dir", str(tmp_path / "docs"), "--no-plots"]
    )
    assert code == 0 and "report:" in capsys.readouterr().out
    assert (tmp_path / "docs" / "report.md").is_file() and (
        tmp_path / "docs" / "results.csv"
    ).is_file()
    assert not (tmp_path / "docs" / "plots").exists()
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert "not a bench folder" in capsys.readouterr().err


def test_report_says_how_many_images_the_diagnostics_used():
    from types import SimpleNamespace

    from semantic_anchors.bench.report import _diagnostics_images, _diagnostics_sentence

    def record(dataset, n):
        return SimpleNamespace(
            dataset=dataset, diagnostics=None if n is None else {"num_images": n}
        )

    runs = {
        "synthlt": {"none": [record("synthlt", 500)], "sar": [record("synthlt", 500)]},
        "fashion-lt": {"sar": [record("fashion-lt", 1000), record("fashion-lt", None)]},
    }
    text = _diagnostics_sentence(_diagnostics_images(runs))
    assert "images used: `synthlt`: 500; `fashion-lt`: 1000" in text
    empty = _diagnostics_images({"synthlt": {"none": [record("synthlt", None)]}})
    assert _diagnostics_sentence(empty) == ""


def test_the_t_quantiles_and_the_paired_interval_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    from semantic_anchors.bench.results import summarize_values, t_quantile_975

    for df in (1, 2, 4, 9, 30, 31, 45, 200):
        assert t_quantile_975(df) == pytest.approx(stats.t.ppf(0.975, df), abs=2e-4)
    values = [1.5, -0.2, 0.9, 2.4, 0.3]
    low, high = stats.t.interval(
        0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values)
    )
    summary = summarize_values(values)
    assert summary["ci95"] == pytest.approx((high - low) / 2, rel=1e-4)
    assert math.isnan(summarize_values([1.0])["ci95"])


def test_a_diverged_run_is_reported_as_such_not_as_a_missing_seed(tmp_path):
    fabricate_bench(tmp_path, missing={("sar", 2)})
    run = tmp_path / "runs/toy/sar/seed2"
    run.mkdir(parents=True)
    (run / "diverged.json").write_text(json.dumps({"step": 37, "parts": ["ce"]}))
    results, _ = build_results(tmp_path, diagnostics=False)
    sar = results["datasets"]["toy"]["methods"]["sar"]
    assert sar["missing_seeds"] == [2] and sar["diverged"] == {"2": 37}
    assert results["datasets"]["toy"]["methods"]["none"]["diverged"] == {}
    text = write_report(tmp_path, embedding="pca").read_text()
    assert "| 2 of 3; seed 2 diverged at step 37 |" in text


def test_a_published_report_rerenders_from_its_results_json_alone(tmp_path):
    from semantic_anchors.bench.rerender import rerender_report

    fabricate_bench(tmp_path / "bench", methods=("none", "sar"), seeds=(0, 1, 2))
    published = tmp_path / "published"
    first = write_report(tmp_path / "bench", report_dir=published, plots=False, diagnostics=False)
    before = first.read_text()
    import shutil

    shutil.rmtree(tmp_path / "bench")  # the run folders are gone, as for a published report
    link = {"title": "compare", "path": "../compare/report.md", "why": "tuned weights."}
    again = rerender_report(published, superseded_by=link).read_text()
    assert "**Superseded** by [compare](../compare/report.md): tuned weights." in again
    # the same tables and the same per-run commands, from results.json alone
    assert before.split("## `toy`")[1] == again.split("## `toy`")[1]
    assert json.loads((published / "results.json").read_text())["superseded_by"] == link
    with pytest.raises(FileNotFoundError, match="results.json"):
        rerender_report(tmp_path / "nowhere")


def test_the_report_names_the_code_and_the_reproduction_check(tmp_path):
    from semantic_anchors.bench.rerender import rerender_report

    fabricate_bench(tmp_path, methods=("none", "sar"), seeds=(0, 1))
    for run in (tmp_path / "runs").rglob("seed*"):
        (run / "code_version.json").write_text(json.dumps(
            [{"commit": "0123456789abcdef", "dirty": False, "package": "1", "threads": 1}]
        ))  # fmt: skip
    text = write_report(tmp_path, plots=False, diagnostics=False).read_text()
    assert "Code: commit 0123456789 (4 runs)." in text
    runs = json.loads((tmp_path / "results.json").read_text())["datasets"]["toy"]["methods"]
    assert runs["sar"]["runs"]["1"]["threads"] == 1
    check = {"dataset": "toy", "method": "none", "seed": 0, "commit": "fedcba9876543210",
             "date": "2026-12-03", "equal": False, "published": {"mIoU": 20.12},
             "now": {"mIoU": 20.29}}  # fmt: skip
    text = rerender_report(tmp_path, reproduction=check).read_text()
    assert "(mIoU 20.12 published, 20.29 now): **today's code does not reproduce" in text
    check["equal"] = True
    text = rerender_report(tmp_path, reproduction=check).read_text()
    assert "`toy/none/seed0` re-run with its command, bit-equal." in text
