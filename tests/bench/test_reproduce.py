"""The reproduction check: a published run re-run with its recorded command gives the published
metrics bit for bit, and a different number is reported as a difference."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from semantic_anchors.bench import load_suite, run_suite, write_report
from semantic_anchors.bench.reproduce import Reproduction, recorded_runs, reproduce_run
from tests._helpers.fabricate import TINY_SET

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A real tiny bench, reported into a folder of its own (as docs/results/<suite>)."""
    root = tmp_path_factory.mktemp("repro")
    suite = load_suite({
        "name": "tiny", "seeds": [0], "set": TINY_SET,
        "datasets": {"synthlt": {"recipe": "synthlt-fcn-quick"}},
        "methods": {"none": {"set": ["regularizer.name=none"]}},
    })  # fmt: skip
    run_suite(suite, root / "bench", jobs=1, echo=lambda _: None)
    write_report(root / "bench", report_dir=root / "report", plots=False, diagnostics=False)
    return root / "report"


def test_a_published_run_is_reproduced_bit_for_bit(published):
    rep = reproduce_run(published)
    assert (rep.dataset, rep.method, rep.seed) == ("synthlt", "none", 0)
    results = json.loads((published / "results.json").read_text())
    recorded = results["datasets"]["synthlt"]["methods"]["none"]["runs"]["0"]
    assert rep.threads == recorded["threads"] >= 1  # the threads the bench ran it with
    assert rep.command == recorded["command"]
    assert rep.equal, "\n".join(rep.lines())
    assert set(rep.published) == {"mIoU", "head_mIoU", "body_mIoU", "tail_mIoU", "mAcc", "aAcc"}
    assert rep.lines()[-1] == "  REPRODUCED (bit-equal)"


def test_a_different_number_is_a_difference(published, tmp_path):
    import shutil

    copy = tmp_path / "report"
    shutil.copytree(published, copy)
    results = json.loads((copy / "results.json").read_text())
    metrics = results["datasets"]["synthlt"]["methods"]["none"]["metrics"]
    metrics["mIoU"]["values"][0] += 1e-9  # the last bits: still a difference
    (copy / "results.json").write_text(json.dumps(results))
    rep = reproduce_run(copy)
    assert not rep.equal and "DIFFERS" in rep.lines()[-1]
    assert any(line.strip().startswith("mIoU:") and "!=" in line for line in rep.lines())
    record = rep.record()
    assert record["equal"] is False and record["published"]["mIoU"] == metrics["mIoU"]["values"][0]


def test_a_difference_names_the_cpu_kinds_unless_they_match():
    rep = Reproduction(Path("r"), "d", "m", 0, "semantic-anchors train x", 1, {"mIoU": 1.0})
    rep.now, rep.cpu = {"mIoU": 2.0}, "Xeon (AVX512)"
    assert (
        not rep.same_cpu and "an unrecorded kind of CPU, re-run on Xeon (AVX512)" in rep.lines()[-1]
    )
    rep.recorded_cpu = "EPYC (AVX2)"
    assert not rep.same_cpu and "published on EPYC (AVX2)" in rep.lines()[-1]
    rep.recorded_cpu = "Xeon (AVX512)"
    assert rep.same_cpu and rep.lines()[-1] == "  DIFFERS from the published run"


def test_old_reports_give_their_commands_in_report_md():
    runs = recorded_runs(ROOT / "docs" / "results" / "compare-untuned")
    assert ("synthlt", "sar", 0) in runs
    assert runs[("synthlt", "sar", 0)].startswith("semantic-anchors train synthlt-fcn-quick --out")
    with pytest.raises(ValueError, match="no recorded run matches"):
        reproduce_run(ROOT / "docs" / "results" / "compare-untuned", method="nope")


@pytest.mark.slow
def test_the_published_paper_tab10_is_reproduced_by_todays_code():
    """One short published run (a MiSLAS stage-1 run, about 40 s) against its published numbers;
    `python benchmarks/reproduce.py --all` checks one run of every report."""
    rep = reproduce_run(ROOT / "docs" / "results" / "paper-tab10" / "suite", "stage1", "none", 0)
    if not rep.equal and not rep.same_cpu:  # another instruction set rounds float sums otherwise
        pytest.skip(
            f"published on {rep.recorded_cpu or 'an unrecorded kind of CPU'}, this is {rep.cpu}: "
            "bit-equality is expected on the same kind only (docs/results/README.md)"
        )
    assert rep.equal, "\n".join(rep.lines())
