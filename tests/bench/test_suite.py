import pytest
import yaml

from semantic_anchors.bench.suite import (
    evaluate_expression,
    list_suites,
    load_suite,
    resolve_suite_path,
    split_derived,
)

GOOD = {
    "seeds": [0, 1],
    "datasets": {"synthlt": {"recipe": "synthlt-fcn-quick", "set": ["trainer.max_steps=5"]}},
    "methods": {
        "none": {"set": ["regularizer.name=none"]},
        "sar": {"set": ["regularizer.name=sar"]},
    },
}


def _with(**changes):
    suite = {**GOOD, **changes}
    return {k: v for k, v in suite.items() if v is not ...}


def test_shipped_suites_load():
    assert {"quick", "ablation", "compare", "longtail-cls"} <= set(list_suites())
    quick = load_suite("quick")
    assert list(quick.methods) == ["none", "sar", "cr-normal", "car"] and quick.seeds == [0, 1]
    assert list(load_suite("compare").datasets) == ["synthlt", "fashion-scenes-lt"]
    ablation = load_suite("ablation")
    assert len(ablation.methods) == 7 and ablation.seeds == [0, 1, 2]
    for name in ("ablation", "compare", "longtail-cls"):  # step counts come from the recipes
        suite = load_suite(name)
        everything = [*suite.overrides, *(o for d in suite.datasets.values() for o in d.overrides),
                      *(o for m in suite.methods.values() for o in m.overrides)]  # fmt: skip
        assert not any(o.startswith("trainer.max_steps") for o in everything), name
    longtail = load_suite("longtail-cls")
    assert len(longtail.methods) == 8
    assert any("${" in o for o in longtail.methods["ldam-drw-sar"].overrides)


def test_a_suite_from_a_path_and_by_name(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(GOOD))
    suite = load_suite(path)
    assert suite.name == "mine" and suite.path == path
    assert resolve_suite_path("quick").name == "quick.yaml"
    with pytest.raises(FileNotFoundError, match="Did you mean quick"):
        load_suite("quik")


@pytest.mark.parametrize(
    ("suite", "message"),
    [
        (_with(method={}), r"unknown key\(s\) 'method' \(did you mean 'methods'\?\); valid keys"),
        (_with(seeds=...), "missing key 'seeds'"),
        (_with(seeds=[0, 0]), "distinct ints"),
        (_with(seeds=[-1]), "distinct ints"),
        (_with(seeds="0"), "seeds"),
        (_with(datasets={"s": {"recipes": "x"}}), r"datasets.s: unknown key\(s\) 'recipes'.*valid keys: \['recipe', 'set', 'description'\]"),
        (_with(datasets={"s": {"set": []}}), "'recipe' .* is required"),
        (_with(datasets={}), "non-empty mapping"),
        (_with(methods={"sar": {"sett": []}}), r"methods.sar: unknown key\(s\) 'sett'.*valid keys: \['set', 'description', 'baseline', 'grid'\]"),
        (_with(methods={"sar": {"baseline": "ce"}, "none": {}}), r"methods.sar.baseline: expected another method of the suite \(\['none'\]\), received 'ce'"),
        (_with(methods={"sar": {"baseline": "sar"}}), r"methods.sar.baseline: expected another method"),
        (_with(methods={"sar": {"set": "regularizer.name=sar"}}), "expected a list"),
        (_with(methods={"sar": {"set": ["regularizer.name"]}}), "'key.sub=value' strings"),
        (_with(methods={"a/b": {"set": []}}), "folder names"),
        (_with(set=["=1"]), "'key.sub=value' strings"),
        (_with(name="a b"), "folder-safe"),
    ],
)  # fmt: skip
def test_bad_suites_are_clear_errors(suite, message):
    with pytest.raises(ValueError, match=message):
        load_suite(suite)


def test_a_method_names_its_baseline_and_the_bench_folder_keeps_it():
    suite = load_suite(_with(methods={"ce": {}, "ce-sar": {"baseline": "ce"}}))
    assert suite.methods["ce-sar"].baseline == "ce" and suite.methods["ce"].baseline is None
    saved = suite.to_dict()["methods"]
    assert saved["ce-sar"]["baseline"] == "ce" and "baseline" not in saved["ce"]
    assert load_suite({**GOOD, "methods": saved}).methods == suite.methods
    assert load_suite("longtail-cls").methods["ldam-drw-sar"].baseline == "ldam-drw"


def test_command_line_overrides_come_last():
    suite = load_suite(_with(set=["trainer.log_every=1"])).with_overrides(["trainer.max_steps=3"])
    assert suite.overrides == ("trainer.log_every=1", "trainer.max_steps=3")
    with pytest.raises(ValueError, match="--set"):
        load_suite(GOOD).with_overrides(["oops"])


def test_expressions_are_evaluated_safely():
    config = {"trainer": {"max_steps": 600, "val_every": 100}}
    assert evaluate_expression("int(0.8 * trainer.max_steps)", config) == 480
    assert evaluate_expression("max(1, trainer.max_steps // 7 - 2)", config) == 83
    assert evaluate_expression("-trainer.val_every + round(2.6)", config) == -97
    with pytest.raises(ValueError, match="unknown config key 'trainer.max_step'"):
        evaluate_expression("trainer.max_step", config)
    for bad in ("__import__('os')", "trainer.max_steps ** 2", "'a'", "open"):
        with pytest.raises(ValueError):
            evaluate_expression(bad, config)


def test_the_last_assignment_of_a_key_wins():
    plain, derived = split_derived(["a.b=${x}", "a.c=1", "a.b=2", "d.e=${y.z * 2}"])
    assert plain == ["a.c=1", "a.b=2"] and derived == [("d.e", "y.z * 2")]
    plain, derived = split_derived(["a.b=2", "a.b=${x}"])
    assert plain == ["a.b=2"] and derived == [("a.b", "x")]


TWO_STAGE = {
    "seeds": [0, 1],
    "datasets": {
        "pre": {"recipe": "synthlt-fcn-quick"},
        "post": {"recipe": "synthlt-fcn-quick", "set": ["model.pretrained=@run(pre/sar)"]},
    },
    "methods": {
        "none": {"set": ["regularizer.name=none"]},
        "sar": {"set": ["regularizer.name=sar"]},
    },
}


def test_a_two_stage_suite_names_the_run_it_starts_from(tmp_path):
    from semantic_anchors.bench.runner import _waves, expand_runs

    specs = expand_runs(load_suite(TWO_STAGE), tmp_path)
    post = {s.key: s for s in specs if s.dataset == "post"}
    spec = post["post/none/seed1"]
    assert f"model.pretrained={tmp_path / 'runs' / 'pre' / 'sar' / 'seed1'}" in spec.overrides
    assert spec.after == ("pre/sar/seed1",)
    waves = _waves([(s, [], "trained") for s in specs])
    assert [sorted({s.dataset for s, _, _ in w}) for w in waves] == [["pre"], ["post"]]


@pytest.mark.parametrize(
    ("datasets", "methods", "message"),
    [
        ({"a": {"recipe": "r", "set": ["x=@run(b/none)"]}, "b": {"recipe": "r"}}, None,
         r"@run\(b/none\) must name a dataset listed before 'a'"),
        ({"a": {"recipe": "r", "set": ["x=@run(a/none)"]}}, None, "listed before 'a'"),
        ({"a": {"recipe": "r"}, "b": {"recipe": "r", "set": ["x=@run(a/ce)"]}}, None,
         r"@run\(a/ce\) names no method"),
        ({"a": {"recipe": "r"}}, {"none": {"set": ["x=@run(a/none)"]}},
         "references belong in a dataset's set"),
    ],
)  # fmt: skip
def test_bad_run_references_are_clear_errors(datasets, methods, message):
    suite = {"seeds": [0], "datasets": datasets, "methods": methods or {"none": {"set": []}}}
    with pytest.raises(ValueError, match=message):
        load_suite(suite)
