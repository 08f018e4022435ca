"""`report` / `viz` on missing folders and corrupt files: named errors, nothing created."""

import json

import pytest
import torch

from semantic_anchors.bench import load_diagnostics, write_report
from semantic_anchors.bench.run_plots import plot_run
from semantic_anchors.cli import main
from tests._helpers.fabricate import fabricate_bench, fabricate_diagnostics

RUN = "runs/toy/sar/seed0"


def test_report_on_a_missing_folder_creates_nothing(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    with pytest.raises(
        FileNotFoundError, match=rf"{missing} is not a bench folder: it does not exist"
    ):
        write_report(missing)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_report(missing, report_dir=tmp_path / "docs")
    assert not missing.exists() and not (tmp_path / "docs").exists()
    assert main(["report", str(missing), "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"semantic-anchors report: error: {missing} is not a bench folder")
    assert len(err.strip().splitlines()) == 1
    assert not missing.exists()


def test_report_on_a_folder_without_runs(tmp_path):
    (tmp_path / "b").mkdir()
    with pytest.raises(FileNotFoundError, match=r"is not a bench folder: no runs/ inside"):
        write_report(tmp_path / "b", report_dir=tmp_path / "docs")
    assert not (tmp_path / "docs").exists() and not (tmp_path / "b" / "report.md").exists()


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ('{"mIoU": 41.', r"is not valid JSON \(corrupt or truncated\?\)"),
        ("[1, 2]", r"must hold a JSON object, got list"),
        ('{"mIoU": "high"}', r"'mIoU' must be a number or null, got 'high'"),
        ('{"IoU": [1.0, "x"]}', r"'IoU' must be a list of numbers / nulls"),
        ('{"class_names": "abc"}', r"'class_names' must be a list of strings"),
    ],
)
def test_report_names_a_corrupt_metrics_json(tmp_path, capsys, content, match):
    fabricate_bench(tmp_path / "bench", seeds=(0, 1))
    bad = tmp_path / "bench" / RUN / "metrics.json"
    bad.write_text(content)
    with pytest.raises(ValueError, match=rf"{bad}: {match}|{bad} {match}"):
        write_report(tmp_path / "bench", report_dir=tmp_path / "docs", plots=False)
    assert not (tmp_path / "docs").exists()  # nothing half-written
    assert main(["report", str(tmp_path / "bench"), "--no-plots"]) == 2
    assert str(bad) in capsys.readouterr().err


@pytest.mark.parametrize(
    ("file", "content", "match"),
    [
        ("suite.yaml", "name: [unclosed", r"suite.yaml is not valid YAML"),
        ("suite.yaml", "- a list", r"suite.yaml must hold a mapping \(a suite\), got list"),
        ("bench.json", "{", r"bench.json is not valid JSON"),
    ],
)
def test_report_names_corrupt_bench_files(tmp_path, file, content, match):
    fabricate_bench(tmp_path)
    (tmp_path / file).write_text(content)
    with pytest.raises(ValueError, match=match):
        write_report(tmp_path, plots=False)


def _bench_with_diagnostics(tmp_path):
    fabricate_bench(tmp_path)
    fabricate_diagnostics(tmp_path / RUN, torch.randn(5, 4), vectors=torch.randn(5, 4))
    return tmp_path / RUN / "diagnostics.pt"


@pytest.mark.parametrize(
    ("corrupt", "match"),
    [
        (lambda p: p.write_bytes(b"\x00garbage" * 10), r"is not a readable diagnostics file"),
        (lambda p: p.write_bytes(p.read_bytes()[:200]), r"is not a readable diagnostics file"),
        (lambda p: torch.save([1, 2], p), r"must hold a dict of diagnostics, got list"),
        (lambda p: torch.save({"version": 1}, p), r"is incomplete: expected the keys .*missing"),
    ],
)
def test_corrupt_diagnostics_are_named_by_report_and_viz(tmp_path, capsys, corrupt, match):
    cache = _bench_with_diagnostics(tmp_path)
    assert load_diagnostics(tmp_path / RUN) is not None  # the intact cache loads
    corrupt(cache)
    pattern = rf"{cache} {match}.*delete it \(the run has no checkpoint to rebuild it from\)"
    with pytest.raises(ValueError, match=pattern):
        load_diagnostics(tmp_path / RUN)
    with pytest.raises(ValueError, match=rf"{cache} "):
        write_report(tmp_path, plots=False)
    with pytest.raises(ValueError, match=rf"{cache} "):
        plot_run(tmp_path / RUN)
    assert main(["viz", str(tmp_path / RUN)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("semantic-anchors viz: error: ") and str(cache) in err


def test_viz_on_a_missing_folder_and_a_corrupt_metrics_json(tmp_path):
    with pytest.raises(FileNotFoundError, match=rf"run folder {tmp_path / 'x'} does not exist"):
        plot_run(tmp_path / "x")
    assert not (tmp_path / "x").exists()
    _bench_with_diagnostics(tmp_path)
    bad = tmp_path / RUN / "metrics.json"
    bad.write_text(json.dumps({"mIoU": "n/a"}))
    with pytest.raises(ValueError, match=rf"{bad}: 'mIoU' must be a number or null"):
        plot_run(tmp_path / RUN)
    assert not (tmp_path / RUN / "plots").exists()
