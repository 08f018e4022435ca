import json
import shutil

import pytest
import yaml

from semantic_anchors.bench import load_suite, run_state, run_suite, summarize
from semantic_anchors.bench.runner import expand_runs, resolve_overrides
from tests._helpers.fabricate import TINY_SET

SUITE = {
    "name": "t", "seeds": [0, 1], "set": ["trainer.log_every=1"],
    "datasets": {"a": {"recipe": "synthlt-fcn-quick", "set": ["trainer.max_steps=7"]},
                 "b": {"recipe": "synthlt-fcn-quick"}},
    "methods": {"none": {"set": ["regularizer.name=none"]},
                "sar": {"set": ["regularizer.name=sar", "regularizer.lambda_p2a=${trainer.max_steps / 100}"]}},
}  # fmt: skip


def test_runs_expand_seed_first_with_overrides_in_order(tmp_path):
    suite = load_suite(SUITE).with_overrides(["trainer.val_every=3"])
    runs = expand_runs(suite, tmp_path)
    assert len(runs) == 2 * 2 * 2
    assert [r.key for r in runs[:4]] == [
        "a/none/seed0",
        "a/sar/seed0",
        "b/none/seed0",
        "b/sar/seed0",
    ]
    assert runs[1].run_dir == tmp_path / "runs" / "a" / "sar" / "seed0"
    assert runs[1].overrides == ("trainer.log_every=1", "trainer.val_every=3", "trainer.max_steps=7",
                                 "regularizer.name=sar", "regularizer.lambda_p2a=${trainer.max_steps / 100}")  # fmt: skip


def test_derived_values_follow_the_resolved_config(tmp_path):
    runs = expand_runs(load_suite(SUITE), tmp_path)
    overrides, config = resolve_overrides(runs[1])  # dataset a: 7 steps
    assert (
        "regularizer.lambda_p2a=0.07" in overrides and config["regularizer"]["lambda_p2a"] == 0.07
    )
    assert overrides[-2:] == ["seed=0", "trainer.progress_bar=false"]
    overrides, config = resolve_overrides(runs[3])  # dataset b: the recipe's step count
    assert config["regularizer"]["lambda_p2a"] == config["trainer"]["max_steps"] / 100
    bad = load_suite({**SUITE, "set": ["trainer.max_stepz=3"]})
    with pytest.raises(
        ValueError, match="run a/none/seed0: unknown config key 'trainer.max_stepz'"
    ):
        run_suite(bad, tmp_path, dry_run=True, echo=lambda _: None)


def test_plan_skips_finished_runs_and_resumes_interrupted_ones(tmp_path):
    suite = load_suite(SUITE)
    runs = expand_runs(suite, tmp_path)
    done, interrupted = runs[0].run_dir, runs[1].run_dir
    assert run_state(done) == "new"
    overrides, config = resolve_overrides(runs[0])
    done.mkdir(parents=True)
    (done / "metrics.json").write_text("{}")
    config["trainer"]["max_steps"] = 99  # the suite changed since this run finished
    (done / "config.yaml").write_text(yaml.safe_dump(config))
    (interrupted / "checkpoints").mkdir(parents=True)
    (interrupted / "checkpoints" / "last.ckpt").write_bytes(b"")
    assert (run_state(done), run_state(interrupted)) == ("done", "resume")

    lines = []
    results = run_suite(suite, tmp_path, jobs=1, dry_run=True, echo=lines.append)
    status = {r.spec.key: r.status for r in results}
    assert status["a/none/seed0"] == "skipped" and list(status.values()).count("planned") == 7
    assert results[0].stale == ["trainer.max_steps: 99 -> 7"]
    assert any("warning" in line and "trainer.max_steps: 99 -> 7" in line for line in lines)
    assert results[1].command.startswith(f"semantic-anchors train --resume {interrupted} --set")
    assert results[2].command.startswith("semantic-anchors train synthlt-fcn-quick --out")
    assert "1 skipped, 7 planned" in summarize(results)
    with pytest.raises(ValueError, match="jobs"):
        run_suite(suite, tmp_path, jobs=0, dry_run=True, echo=lambda _: None)


def test_a_real_bench_trains_reports_failures_and_skips_finished_runs(tiny_bench):
    suite, out, results, lines = tiny_bench
    status = {r.spec.key: r for r in results}
    ok, broken = status["synthlt/sar/seed0"], status["synthlt/broken/seed0"]
    assert ok.status == "trained", ok.error_tail
    metrics = json.loads((ok.spec.run_dir / "metrics.json").read_text())
    assert metrics["steps"] == 2 and len(metrics["IoU"]) == 13
    config = yaml.safe_load((ok.spec.run_dir / "config.yaml").read_text())
    assert config["seed"] == 0 and config["regularizer"]["delta"] == 0.2
    assert (ok.spec.run_dir / "command.txt").read_text().startswith("semantic-anchors train ")

    assert broken.status == "failed" and broken.returncode == 2
    error = (broken.spec.run_dir / "error.log").read_text()
    assert "does not take option(s) ['bogus']" in error and "return code: 2" in error
    text = summarize(results)
    assert "1 trained, 1 failed" in text and "synthlt/broken/seed0: return code 2" in text
    assert "bogus" in text

    again = run_suite(suite, out, dry_run=True, echo=lambda _: None)
    assert [r.status for r in again] == ["skipped", "planned"]


def test_an_interrupted_run_is_resumed(tiny_bench, tmp_path):
    suite, out, _, _ = tiny_bench
    source = out / "runs" / "synthlt" / "sar" / "seed0"
    target = tmp_path / "runs" / "synthlt" / "sar" / "seed0"
    shutil.copytree(source, target)
    before = json.loads((target / "metrics.json").read_text())
    (target / "metrics.json").unlink()  # as if killed after the last checkpoint
    only_sar = load_suite(
        {**suite.to_dict(), "methods": {"sar": suite.to_dict()["methods"]["sar"]}}
    )
    results = run_suite(only_sar, tmp_path, jobs=1, echo=lambda _: None)
    assert [r.status for r in results] == ["resumed"], results[0].error_tail
    after = json.loads((target / "metrics.json").read_text())
    assert after["mIoU"] == pytest.approx(before["mIoU"]) and after["steps"] == 2
    assert "--resume" in (target / "command.txt").read_text().splitlines()[-1]


@pytest.mark.slow
def test_sigterm_stops_exactly_the_runs_it_started(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    suite = tmp_path / "long.yaml"
    suite.write_text(yaml.safe_dump({
        "seeds": [0], "set": [*TINY_SET, "trainer.max_steps=2000", "trainer.val_every=2000"],
        "datasets": {"synthlt": {"recipe": "synthlt-fcn-quick"}},
        "methods": {"none": {"set": ["regularizer.name=none"]}},
    }))  # fmt: skip
    bench = subprocess.Popen(
        [sys.executable, "-m", "semantic_anchors.cli", "bench", str(suite), "--out",
         str(tmp_path / "out"), "--jobs", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    children: list[str] = []
    for _ in range(120):
        out = subprocess.run(["pgrep", "-P", str(bench.pid)], capture_output=True, text=True)
        children = out.stdout.split()
        if children:
            break
        time.sleep(0.5)
    assert children, "the bench never started its run"
    time.sleep(5)
    bench.send_signal(signal.SIGTERM)
    _, err = bench.communicate(timeout=60)
    assert bench.returncode == 130 and "run the same command again" in err
    time.sleep(1)
    assert not any(os.path.exists(f"/proc/{pid}") for pid in children)
    run = tmp_path / "out/runs/synthlt/none/seed0"
    assert not (run / "metrics.json").exists()
    assert (run / "error.log").read_text().startswith("stopped by the bench")


def test_a_key_added_after_a_run_finished_counts_as_its_default(tmp_path):
    """A run trained before a config key existed did what the key's default does: not stale."""
    suite = load_suite(SUITE)
    spec = expand_runs(suite, tmp_path)[0]
    _, config = resolve_overrides(spec)
    spec.run_dir.mkdir(parents=True)
    (spec.run_dir / "metrics.json").write_text("{}")
    del config["trainer"]["agree_every"]  # an older version wrote no such key
    (spec.run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    results = run_suite(suite, tmp_path, jobs=1, dry_run=True, echo=lambda _: None)
    assert results[0].status == "skipped" and results[0].stale == []
    config["trainer"]["val_every"] = 3  # a real difference is still reported
    (spec.run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    results = run_suite(suite, tmp_path, jobs=1, dry_run=True, echo=lambda _: None)
    assert results[0].stale and results[0].stale[0].startswith("trainer.val_every: 3 ->")


def test_the_summary_names_a_diverged_run(tmp_path):
    import json

    from semantic_anchors.bench.runner import RunResult, RunSpec

    run = tmp_path / "runs/toy/sar/seed0"
    run.mkdir(parents=True)
    (run / "diverged.json").write_text(json.dumps({"step": 12}))
    spec = RunSpec("toy", "sar", 0, "synthlt-fcn-quick", (), run)
    other = RunSpec("toy", "none", 0, "synthlt-fcn-quick", (), tmp_path / "none")
    text = summarize([
        RunResult(spec, "failed", returncode=3, error_tail="training diverged ...", command="x"),
        RunResult(other, "failed", returncode=1, error_tail="boom", command="y"),
    ])  # fmt: skip
    assert f"toy/sar/seed0: diverged at step 12, {run / 'error.log'}" in text
    assert "toy/none/seed0: return code 1" in text
    assert run_state(run) == "new" and (run / "diverged.json").is_file()
