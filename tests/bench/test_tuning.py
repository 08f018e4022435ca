"""The sweep form of a suite: grids, the equal tuning budget, held-out selection, the report."""

import json

import numpy as np
import pytest

from semantic_anchors.bench import load_suite, run_suite, summarize, write_report
from semantic_anchors.bench.runner import expand_runs, expand_tuning_runs, select_trials
from tests._helpers.fabricate import fabricate_run


def tuned(**changes):
    suite = {
        "name": "tuned", "seeds": [0, 1],
        "tune": {"seeds": [0], "holdout": 0.25},
        "datasets": {"a": {"recipe": "synthlt-fcn-quick", "set": ["trainer.max_steps=7"]}},
        "methods": {
            "none": {"set": ["regularizer.name=none"]},
            "sar": {"set": ["regularizer.name=sar"],
                    "grid": {"regularizer.lambda_p2a": [0.01, 0.1, 1.0]}},
            "car": {"set": ["regularizer.name=car"], "grid": [
                {"regularizer.lambda_intra": 0.1, "regularizer.lambda_inter": 0.1},
                {"regularizer.lambda_intra": 1.0, "regularizer.lambda_inter": 1.0},
                {"regularizer.lambda_intra": 10.0, "regularizer.lambda_inter": 10.0},
            ]},
        },
    }  # fmt: skip
    for key, value in changes.items():
        suite[key] = value
    return suite


def test_a_grid_is_the_product_of_its_lists_or_the_trials_it_lists():
    suite = load_suite(tuned())
    assert suite.tuned_methods == ["sar", "car"]
    assert suite.methods["sar"].trial_overrides(2) == ("regularizer.lambda_p2a=1.0",)
    assert suite.methods["car"].trial_overrides(0) == (
        "regularizer.lambda_intra=0.1", "regularizer.lambda_inter=0.1",
    )  # fmt: skip
    product = load_suite(tuned(methods={"sar": {"grid": {"regularizer.lambda_p2a": [0.1, 1.0],
                                                         "regularizer.momentum": [0.99, 0.999]}}}))  # fmt: skip
    assert product.methods["sar"].grid == (
        (("regularizer.lambda_p2a", 0.1), ("regularizer.momentum", 0.99)),
        (("regularizer.lambda_p2a", 0.1), ("regularizer.momentum", 0.999)),
        (("regularizer.lambda_p2a", 1.0), ("regularizer.momentum", 0.99)),
        (("regularizer.lambda_p2a", 1.0), ("regularizer.momentum", 0.999)),
    )
    again = load_suite(suite.to_dict())  # what DIR/suite.yaml holds reads back the same
    assert again.methods == suite.methods and again.tune == suite.tune


def _with_sar_grid(grid, **tune):
    data = tuned()
    data["methods"]["sar"]["grid"] = grid
    data["tune"].update(tune)
    return data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_with_sar_grid({"regularizer.lambda_p2a": [0.1, 1.0]}),
         r"same number of trials .*sar 2, car 3"),
        (_with_sar_grid({"regularizer.lambda_p2a": [0.1, 0.2, 1.0]}, trials=4),
         r"tune.trials = 4; the grids have sar 3, car 3"),
        (tuned(tune=None), "have a grid but the suite has no 'tune' section"),
        (tuned(methods={"none": {"set": ["regularizer.name=none"]}}), "no method has a 'grid'"),
        (_with_sar_grid({"data.holdout": [0.1, 0.2, 0.3]}), "set by the tuning itself"),
        (_with_sar_grid({"seed": [1, 2, 3]}), "set by the tuning itself"),
        (_with_sar_grid({"regularizer.lambda_p2a": []}), "non-empty list of values"),
        (_with_sar_grid({"regularizer.lambda_p2a": [[1], 2, 3]}), "a number, string, bool or null"),
        (_with_sar_grid([{"regularizer.lambda_p2a": 1}, {"regularizer.lambda_p2a": 1},
                         {"regularizer.lambda_p2a": 2}]), "lists a trial twice"),
        (_with_sar_grid("lambda=1"), "a list of non-empty mappings"),
        (_with_sar_grid({"not a key": [1, 2, 3]}), "not a dotted config key"),
        (_with_sar_grid({"regularizer.lambda_p2a": [1, 2, 3]}, holdout=1.0), r"fraction in \(0, 1\)"),
        (_with_sar_grid({"regularizer.lambda_p2a": [1, 2, 3]}, seeds=[]), "tune.seeds"),
        (_with_sar_grid({"regularizer.lambda_p2a": [1, 2, 3]}, metrics="mIoU"), "did you mean 'metric'"),
    ],
)  # fmt: skip
def test_bad_tuning_sections_are_named(data, message):
    with pytest.raises(ValueError, match=message):
        load_suite(data)


def test_a_two_stage_suite_cannot_be_tuned():
    data = tuned()
    data["datasets"]["b"] = {"recipe": "synthlt-fcn-quick", "set": ["model.pretrained=@run(a/sar)"]}
    with pytest.raises(ValueError, match="@run"):
        load_suite(data)


def test_tuning_runs_validate_on_the_held_out_part(tmp_path):
    suite = load_suite(tuned())
    specs = expand_tuning_runs(suite, tmp_path)
    assert len(specs) == 2 * 3  # tuned methods x trials x tuning seeds
    first = specs[0]
    assert first.run_dir == tmp_path / "tune" / "a" / "sar" / "trial0" / "seed0"
    assert first.key == "tune:a/sar/trial0/seed0"
    assert first.overrides == (
        "trainer.max_steps=7", "regularizer.name=sar", "regularizer.lambda_p2a=0.01",
        "data.holdout=0.25", "data.holdout_seed=0",
    )  # fmt: skip
    # the reported runs: the chosen trial after the method's own overrides, no hold-out
    runs = expand_runs(suite, tmp_path, {("a", "sar"): 1})
    sar = next(r for r in runs if r.method == "sar")
    assert sar.overrides[-2:] == ("regularizer.name=sar", "regularizer.lambda_p2a=0.1")
    car = next(r for r in runs if r.method == "car")
    assert car.overrides[-1] == "regularizer.name=car"  # no choice yet


def _score(tmp_path, method, trial, seed, miou):
    run = tmp_path / "tune" / "a" / method / f"trial{trial}" / f"seed{seed}"
    metrics = fabricate_run(run, np.random.default_rng(trial))
    metrics["mIoU"] = miou
    (run / "metrics.json").write_text(json.dumps(metrics))


def test_the_best_mean_held_out_score_is_chosen(tmp_path):
    suite = load_suite(tuned(tune={"seeds": [0, 1], "holdout": 0.2}))
    for trial, scores in enumerate([(30.0, 10.0), (21.0, 21.0), (25.0, 12.0)]):
        for seed, value in enumerate(scores):
            _score(tmp_path, "sar", trial, seed, value)
    for trial in range(3):  # a tie: the first trial of the grid wins
        _score(tmp_path, "car", trial, 0, 5.0)
        if trial:
            _score(tmp_path, "car", trial, 1, 5.0)
    selection = select_trials(suite, tmp_path)["a"]
    assert [t["mean"] for t in selection["sar"]["trials"]] == [20.0, 21.0, 18.5]
    assert selection["sar"]["chosen"] == 1 and selection["sar"]["metric"] == "mIoU"
    assert selection["car"]["chosen"] is None  # car trial 0, seed 1 has not run
    _score(tmp_path, "car", 0, 1, 5.0)
    assert select_trials(suite, tmp_path)["a"]["car"]["chosen"] == 0
    wrong = load_suite(tuned(tune={"seeds": [0, 1], "metric": "top1"}))
    with pytest.raises(ValueError, match="no metric 'top1' to tune on"):
        select_trials(wrong, tmp_path)


def test_the_plan_waits_for_tuning_and_then_uses_the_choice(tmp_path):
    suite = load_suite(tuned())
    lines = []
    results = run_suite(suite, tmp_path, jobs=1, dry_run=True, echo=lines.append)
    status = [r.status for r in results]
    assert status.count("planned") == 6 + 2 and status.count("pending") == 4  # 2 methods x 2 seeds
    assert "6 runs (1 datasets x 2 tuned methods x 3 trials x 1 seed(s)" in lines[0]
    assert "8 planned, 4 pending" in summarize(results)
    for trial, value in enumerate([10.0, 12.0, 11.0]):
        _score(tmp_path, "sar", trial, 0, value)
        _score(tmp_path, "car", trial, 0, 20.0 - trial)
    lines = []
    results = run_suite(suite, tmp_path, jobs=1, dry_run=True, echo=lines.append)
    assert "tuned a/sar: lambda_p2a=0.1 (held-out mIoU 12.00)" in lines
    commands = {r.spec.key: r.command for r in results if r.status == "planned"}
    assert set(commands) == {f"a/{m}/seed{s}" for m in ("none", "sar", "car") for s in (0, 1)}
    assert "regularizer.lambda_p2a=0.1 seed=1" in commands["a/sar/seed1"]
    assert "regularizer.lambda_inter=0.1 seed=0" in commands["a/car/seed0"]
    assert "data.holdout" not in commands["a/sar/seed0"]


def test_the_report_shows_every_trial_and_the_choice(tmp_path):
    suite = load_suite(tuned())
    rng = np.random.default_rng(0)
    for method in suite.methods:
        for seed in suite.seeds:
            fabricate_run(tmp_path / "runs" / "a" / method / f"seed{seed}", rng)
    (tmp_path / "suite.yaml").write_text(json.dumps(suite.to_dict()))
    for trial, value in enumerate([10.0, 12.0, 11.0]):
        _score(tmp_path, "sar", trial, 0, value)
        _score(tmp_path, "car", trial, 0, 20.0 + trial)
    run_suite(suite, tmp_path, jobs=1, dry_run=True, echo=lambda _: None)  # no selection file
    assert not (tmp_path / "tune" / "selection.json").exists()
    from semantic_anchors.bench.tuning import write_selection

    write_selection(select_trials(suite, tmp_path), tmp_path, suite)
    report = write_report(tmp_path, plots=False, diagnostics=False).read_text()
    assert "### Tuning on a held-out part of the training data" in report
    assert "on 75% of the training items (seed 0)" in report
    assert "| `sar` | `lambda_p2a=0.1` | 12.00 | ✓ |" in report
    assert "| `sar` | `lambda_p2a=1.0` | 11.00 |  |" in report
    assert "| `car` | `lambda_intra=10.0, lambda_inter=10.0` | 22.00 | ✓ *edge* |" in report
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["tuning"]["datasets"]["a"]["sar"]["chosen"] == 1


@pytest.mark.slow
def test_a_real_tuned_bench_trains_trials_then_the_chosen_runs(tmp_path):
    from tests._helpers.fabricate import TINY_SET

    data = {
        "name": "tiny-tuned", "seeds": [0], "set": TINY_SET,
        "tune": {"seeds": [0], "holdout": 0.25},
        "datasets": {"s": {"recipe": "synthlt-fcn-quick"}},
        "methods": {"none": {"set": ["regularizer.name=none"]},
                    "sar": {"set": ["regularizer.name=sar"],
                            "grid": {"regularizer.lambda_p2a": [0.01, 1.0]}}},
    }  # fmt: skip
    suite = load_suite(data)
    results = run_suite(suite, tmp_path, jobs=2, echo=lambda _: None)
    assert [r.status for r in results] == ["trained"] * 4, summarize(results)
    selection = json.loads((tmp_path / "tune" / "selection.json").read_text())
    info = selection["datasets"]["s"]["sar"]
    scores = [t["mean"] for t in info["trials"]]
    assert info["chosen"] == max(range(2), key=lambda i: (scores[i], -i))
    import yaml

    for trial in (0, 1):
        config = yaml.safe_load(
            (
                tmp_path / "tune" / "s" / "sar" / f"trial{trial}" / "seed0" / "config.yaml"
            ).read_text()
        )
        assert config["data"]["holdout"] == 0.25
        assert config["regularizer"]["lambda_p2a"] == [0.01, 1.0][trial]
    reported = yaml.safe_load(
        (tmp_path / "runs" / "s" / "sar" / "seed0" / "config.yaml").read_text()
    )
    assert reported["data"]["holdout"] is None
    assert reported["regularizer"]["lambda_p2a"] == [0.01, 1.0][info["chosen"]]
    again = run_suite(suite, tmp_path, jobs=2, echo=lambda _: None)  # nothing left to do
    assert [r.status for r in again] == ["skipped"] * 4


def test_runs_of_a_method_whose_tuning_failed_are_not_started(tmp_path, monkeypatch):
    from semantic_anchors.bench import runner
    from semantic_anchors.bench.runner import RunResult

    started = []

    def fake_execute(name, todo, jobs, threads, results):
        for spec, _, _ in todo:
            started.append(spec.key)
            failed = spec.method == "car" and spec.trial is not None
            if not failed and spec.trial is not None:
                _score(tmp_path, spec.method, spec.trial, spec.seed, 10.0 + spec.trial)
            results[spec.key] = RunResult(spec, "failed" if failed else "trained")

    monkeypatch.setattr(runner, "execute_all", fake_execute)
    results = run_suite(load_suite(tuned()), tmp_path, jobs=1, echo=lambda _: None)
    status = {r.spec.key: r.status for r in results}
    assert [k for k in started if not k.startswith("tune:")] == [
        "a/none/seed0", "a/sar/seed0", "a/none/seed1", "a/sar/seed1",
    ]  # fmt: skip
    assert status["a/car/seed0"] == status["a/car/seed1"] == "failed"
    text = summarize(results)
    assert "a/car/seed1: not run: its method's tuning runs have not all finished" in text
    selection = json.loads((tmp_path / "tune" / "selection.json").read_text())["datasets"]["a"]
    assert selection["sar"]["chosen"] == 2 and selection["car"]["chosen"] is None
