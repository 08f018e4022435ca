"""An identical resolved config + seed is trained once: within a plan, within a bench folder and
across the folders given to ``--reuse-from``."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from semantic_anchors.bench import load_suite, run_suite
from semantic_anchors.bench.reuse import REUSED_FROM_FILE, RunIndex, config_key, reused_from
from semantic_anchors.bench.runner import _waves, resolve_overrides
from semantic_anchors.bench.specs import RunSpec
from tests._helpers.fabricate import TINY_SET


def _suite(methods: dict[str, list[str]], name: str = "twins"):
    return load_suite({
        "name": name, "seeds": [0], "set": TINY_SET,
        "datasets": {"synthlt": {"recipe": "synthlt-fcn-quick"}},
        "methods": {m: {"set": s} for m, s in methods.items()},
    })  # fmt: skip


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    """One real bench whose methods ``a`` and ``b`` resolve to the same config (``c`` differs)."""
    out = tmp_path_factory.mktemp("reuse") / "first"
    suite = _suite({
        "a": ["regularizer.name=none"],
        "b": ["regularizer.name=sar", "regularizer.name=none"],  # same config, other way
        "c": ["regularizer.name=sar"],
    })  # fmt: skip
    lines: list[str] = []
    results = run_suite(suite, out, jobs=2, echo=lines.append)
    return out, {r.spec.method: r for r in results}, lines


def test_identical_runs_in_one_plan_train_once(twins):
    out, results, lines = twins
    assert results["a"].status == "trained" and results["c"].status == "trained"
    assert results["b"].status == "reused"
    assert "2 to run" in lines[0] and "1 reused" in lines[0]
    a, b = out / "runs/synthlt/a/seed0", out / "runs/synthlt/b/seed0"
    assert (b / "metrics.json").read_bytes() == (a / "metrics.json").read_bytes()
    assert os.path.samefile(a / "metrics.json", b / "metrics.json")  # hard links, no copy
    record = reused_from(b)
    assert record["source"] == str(a.resolve()) and len(record["key"]) == 64
    assert reused_from(a) is None


def test_the_key_of_a_saved_config_equals_the_resolved_one(twins):
    out, results, _ = twins
    _, config = resolve_overrides(results["a"].spec)
    saved = yaml.safe_load((out / "runs/synthlt/a/seed0/config.yaml").read_text())
    assert config_key(saved) == config_key(config)
    _, other = resolve_overrides(results["c"].spec)
    assert config_key(other) != config_key(config)
    progress = yaml.safe_load(yaml.safe_dump(config))
    progress["trainer"]["progress_bar"] = not progress["trainer"].get("progress_bar")
    assert config_key(progress) == config_key(config)  # a display option is not part of it
    progress["seed"] = 1
    assert config_key(progress) != config_key(config)


def test_another_bench_reuses_finished_runs_and_trains_the_rest(twins, tmp_path):
    first, _, _ = twins
    suite = _suite({"ce": ["regularizer.name=none"], "sar": ["regularizer.name=sar",
                    "regularizer.lambda_p2a=0.3"]}, name="second")  # fmt: skip
    plan: list[str] = []
    dry = run_suite(suite, tmp_path, jobs=1, dry_run=True, echo=plan.append, reuse_from=(first,))
    assert {r.spec.method: r.status for r in dry} == {"ce": "reused", "sar": "planned"}
    assert not (tmp_path / "runs").exists()  # a dry run copies nothing
    results = run_suite(suite, tmp_path, jobs=1, echo=lambda _: None, reuse_from=(first,))
    assert {r.spec.method: r.status for r in results} == {"ce": "reused", "sar": "trained"}
    ce = tmp_path / "runs/synthlt/ce/seed0"
    assert reused_from(ce)["source"] == str((first / "runs/synthlt/a/seed0").resolve())
    again = run_suite(suite, tmp_path, jobs=1, echo=lambda _: None, reuse_from=(first,))
    assert {r.status for r in again} == {"skipped"}


def test_a_chain_of_reuse_points_at_the_folder_that_trained(twins, tmp_path):
    first, _, _ = twins
    index = RunIndex([first])
    b = first / "runs/synthlt/b/seed0"
    key = json.loads((b / REUSED_FROM_FILE).read_text())["key"]
    assert index.find(key, tmp_path / "x") == first / "runs/synthlt/a/seed0"
    with pytest.raises(FileNotFoundError, match="--reuse-from"):
        RunIndex([tmp_path / "missing"])
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "train.log").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        RunIndex.materialize(b, tmp_path / "busy", key)


def test_a_stage_two_run_waits_for_the_original_of_a_copied_stage_one(tmp_path):
    def spec(method: str, after: tuple[str, ...] = ()) -> RunSpec:
        return RunSpec("d", method, 0, "r", (), tmp_path / method, after=after)

    s1, s2 = spec("s1"), spec("s2", after=("d/copy/seed0",))
    waves = _waves([(s1, [], "trained"), (s2, [], "trained")], {"d/copy/seed0": s1.key})
    assert [[t[0].method for t in w] for w in waves] == [["s1"], ["s2"]]
    assert len(_waves([(s1, [], "trained"), (s2, [], "trained")])) == 1  # without the alias
