"""Bad config input is a one-line ``ValueError`` naming the file or key, the value and what is
allowed, raised while loading (before anything is created)."""

import copy
import time
import typing

import pytest

from semantic_anchors.train.config import DEFAULTS, load_config, validate_config
from semantic_anchors.train.config_checks import PRECISIONS

# Malformed YAML: (text, line:col of the problem, words of the message).
MALFORMED = [
    ("trainer:\n  max_steps: 3\n  val_every: 2: 3\n", "3:15", "mapping values are not allowed"),
    ("trainer:\n\tmax_steps: 3\n", "2:1", "found character '\\t'"),
    ("trainer:\n  max_steps: [1, 2\n", "3:1", "expected ',' or ']'"),
    ("trainer: {max_steps: 3\n", "2:1", "expected ',' or '}'"),
    ("name: 'abc\nseed: 1\n", "3:1", "while scanning a quoted scalar at 1:7"),
    ("trainer:\n  max_steps: 3\n  max_steps: 4\n", "3:3", "duplicate key 'max_steps'"),
    ("name: !!python/object/apply:os.system ['echo pwned']\n", "1:7", "could not determine"),
]


@pytest.mark.parametrize(("text", "where", "words"), MALFORMED)
def test_malformed_yaml_names_file_line_and_column(tmp_path, text, where, words):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    with pytest.raises(ValueError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{where}: could not parse YAML: ")
    assert words in message and "\n" not in message


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("- 1\n- 2\n", r"recipe.yaml: a config must be a YAML mapping, got list"),
        ("base: no-such-recipe\n", r"recipe.yaml: base 'no-such-recipe' is not a recipe in "),
        ("base: _paper-seg-bse\n", r"recipe.yaml: .*did you mean '_paper-seg-base'\?"),
        ("base: recipe\n", r"recipe.yaml: base 'recipe' leads back to this recipe"),
        ("base: 3\n", r"recipe.yaml: base must be the name of a recipe, got 3"),
        ("trainer:\n  max_stepz: 3\n", r"recipe.yaml: unknown config key 'trainer.max_stepz'"),
        ("trainer:\n  val_every: 0\n", r"recipe.yaml: trainer.val_every must be >= 1, got 0$"),
    ],
)
def test_bad_recipe_file_is_named(tmp_path, text, match):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        load_config(path)


def test_missing_base_of_a_chain_names_the_recipe_that_asked(tmp_path):
    (tmp_path / "child.yaml").write_text("base: parent\n")
    (tmp_path / "parent.yaml").write_text("base: grandparent\n")
    with pytest.raises(ValueError, match=r"parent.yaml: base 'grandparent' is not a recipe"):
        load_config(tmp_path / "child.yaml")


def test_base_cycle_is_refused(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b\n")
    (tmp_path / "b.yaml").write_text("base: a\n")
    with pytest.raises(ValueError, match=r"b.yaml: base 'a' leads back"):
        load_config(tmp_path / "a.yaml")


def test_not_utf8_names_the_file(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_bytes(b"name: \xff\n")
    with pytest.raises(ValueError, match=r"recipe.yaml: not UTF-8 text"):
        load_config(path)


# Bad ``--set`` values: (override, dotted key, what the message says is allowed).
BAD_VALUES = [
    # wrong types (bool is never an int; a YAML string is never a number)
    ("trainer.max_steps=abc", "must be an integer, got 'abc'"),
    ("trainer.max_steps=true", "must be an integer, got True"),
    ("trainer.max_steps=1.5", "must be an integer, got 1.5"),
    ("trainer.max_steps=", "must be an integer, got None"),
    ("trainer.max_steps.sub=1", "must be an integer, got {'sub': 1}"),
    ("trainer.stop_at_step=x", "must be an integer or null, got 'x'"),
    ("trainer.deterministic=maybe", "must be true or false, got 'maybe'"),
    ("trainer.progress_bar=1", "must be true or false, got 1"),
    ("trainer.checkpoint_minutes=soon", "must be a number or null, got 'soon'"),
    ("trainer.save_best=0", "must be true or false, got 0"),
    ("trainer.devices=[0, 1]", "must be an integer or a string, got [0, 1]"),
    ("trainer.precision=16.0", "must be an integer or a string, got 16.0"),
    ("trainer.limit_val_batches=all", "must be an integer or a number, got 'all'"),
    ("optimizer.lr=fast", "must be a number, got 'fast'"),
    ("optimizer.lr=false", "must be a number, got False"),
    ("optimizer.betas=0.9", "must be a list of numbers, got 0.9"),
    ("optimizer.name=1", "must be a string, got 1"),
    ("data.batch_size=[8]", "must be an integer, got [8]"),
    ("data.crop_size=64x64", "must be an integer, a list of integers or null, got '64x64'"),
    ("data.options=3", "must be a mapping, got 3"),
    ("data.root=1", "must be a string or null, got 1"),
    ("eval.stride=[true, 1]", "must be an integer, a list of integers or null, got [True, 1]"),
    ("seed=abc", "must be an integer, got 'abc'"),
    ("name=7", "must be a string, got 7"),
    # out of range
    ("data.batch_size=0", "must be >= 1, got 0"),
    ("data.val_batch_size=-1", "must be >= 1, got -1"),
    ("data.num_workers=-1", "must be >= 0, got -1"),
    ("data.crop_size=0", "must be a positive integer, [height, width] of positive integers"),
    ("data.crop_size=[64, 64, 3]", "[height, width] of positive integers or null, got [64, 64, 3]"),
    ("data.crop_size=[64, 0]", "got [64, 0]"),
    ("trainer.max_steps=-5", "must be >= 1, got -5"),
    ("trainer.max_steps=0", "must be >= 1, got 0"),
    ("trainer.val_every=0", "must be >= 1, got 0"),
    ("trainer.log_every=0", "must be >= 1, got 0"),
    ("trainer.stop_at_step=0", "null or in [1, 1500] (trainer.max_steps=1500), got 0"),
    ("trainer.stop_at_step=1501", "null or in [1, 1500] (trainer.max_steps=1500), got 1501"),
    ("trainer.num_nodes=0", "must be >= 1, got 0"),
    ("trainer.checkpoint_every=0", "must be >= 1 or null, got 0"),
    ("trainer.checkpoint_minutes=0", "must be > 0 or null, got 0"),
    ("trainer.checkpoint_minutes=-1.5", "must be > 0 or null, got -1.5"),
    ("trainer.threads=0", "must be >= 1 or null, got 0"),
    ("trainer.devices=0", "a count >= 1, -1 (all), 'auto' or a list of device ids"),
    ("trainer.devices=two", "got 'two'"),
    ("trainer.precision=fp16", "one of Lightning's precisions ('32-true', "),
    ("trainer.precision=8", "got 8"),
    ("trainer.limit_val_batches=0", "a fraction in (0.0, 1.0], got 0"),
    ("trainer.limit_val_batches=1.5", "a fraction in (0.0, 1.0], got 1.5"),
    ("trainer.gradient_clip_val=-1", "must be >= 0 or null, got -1"),
    ("optimizer.lr=0", "must be > 0, got 0"),
    ("optimizer.lr=-1e-3", "must be > 0, got -0.001"),
    ("optimizer.lr=.nan", "must be > 0, got nan"),
    ("optimizer.lr=.inf", "must be > 0, got inf"),
    ("optimizer.momentum=1", "must be in [0, 1), got 1"),
    ("optimizer.momentum=-0.1", "must be in [0, 1), got -0.1"),
    ("optimizer.weight_decay=-1", "must be >= 0, got -1"),
    ("optimizer.poly_power=-1", "must be >= 0, got -1"),
    ("optimizer.min_lr=-1", "must be >= 0, got -1"),
    ("optimizer.head_lr_mult=0", "must be > 0, got 0"),
    ("optimizer.warmup_steps=-1", "in [0, 1500) (trainer.max_steps=1500), got -1"),
    ("optimizer.warmup_steps=1500", "in [0, 1500) (trainer.max_steps=1500), got 1500"),
    ("optimizer.betas=[0.9]", "[beta1, beta2], each in [0, 1), got [0.9]"),
    ("optimizer.betas=[0.9, 1.0]", "got [0.9, 1.0]"),
    ("optimizer.name=adam", "must be one of ('sgd', 'adamw'), got 'adam'"),
    ("eval.mode=sliding", "must be one of ('whole', 'slide'), got 'sliding'"),
    ("eval.crop_size=-3", "got -3"),
    ("seed=-1", "must be in [0, 4294967295], got -1"),
    ("seed=4294967296", "got 4294967296"),
    ("name=a/b", "must be a folder name"),
    ("name=..", "got '..'"),
    ("name=", "must be a string, got None"),
    ("name=my run", "got 'my run'"),
    # open sections
    ("model=fcn", "must be a mapping with a 'name', got 'fcn'"),
    ("regularizer.name=", "must be a non-empty string, got None"),
    ("loss.name=3", "must be a non-empty string, got 3"),
]


@pytest.mark.parametrize(("override", "allowed"), BAD_VALUES)
def test_bad_value_names_key_value_and_what_is_allowed(override, allowed):
    key = override.split("=", 1)[0].removesuffix(".sub")
    with pytest.raises(ValueError) as info:
        load_config("synthlt-fcn-quick", [override])
    message = str(info.value)
    assert message.startswith(f"{key} must be "), message
    assert allowed in message and "\n" not in message


def test_slide_eval_needs_crop_and_stride():
    with pytest.raises(ValueError, match=r"^eval.crop_size must be set when eval.mode is 'slide'"):
        load_config("synthlt-fcn-quick", ["eval.mode=slide", "eval.stride=32"])
    with pytest.raises(ValueError, match=r"^eval.stride must be set when eval.mode is 'slide'"):
        load_config("synthlt-fcn-quick", ["eval.mode=slide", "eval.crop_size=64"])


@pytest.mark.parametrize(
    "override",
    [
        "optimizer.lr=1e-3",  # a float (YAML 1.1 would read the string '1e-3')
        "optimizer.lr=1",  # an int is a valid float
        "optimizer.name=AdamW",  # the training module lower-cases it
        "trainer.devices='0,1'",
        "trainer.devices=auto",
        "trainer.devices=-1",
        "trainer.precision=bf16-mixed",
        "trainer.precision=16",
        "trainer.limit_val_batches=3",
        "trainer.limit_val_batches=0.5",
        "trainer.stop_at_step=1500",
        "trainer.val_every=2000",  # above max_steps: validate at the end only
        "trainer.checkpoint_every=100",
        "trainer.checkpoint_minutes=null",
        "trainer.threads=2",
        "trainer.save_best=true",
        "data.crop_size=[32, 48]",
        "data.num_workers=0",
        "seed=4294967295",
        "name=my_run-2.v1+x",
    ],
)
def test_good_values_pass(override):
    load_config("synthlt-fcn-quick", [override])


def test_scientific_notation_is_a_float_in_recipes(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text("optimizer:\n  lr: 1e-3\n  min_lr: 1.0e5\n  weight_decay: 5E-4\n")
    config = load_config(path)
    assert config["optimizer"]["lr"] == 1e-3 and config["optimizer"]["min_lr"] == 1e5
    assert config["optimizer"]["weight_decay"] == 5e-4


def test_a_recipe_value_fixed_by_an_override_is_accepted(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text("trainer:\n  max_steps: 10\n  stop_at_step: 20\n")
    with pytest.raises(ValueError, match=r"recipe.yaml: trainer.stop_at_step must be null or in"):
        load_config(path)
    assert load_config(path, ["trainer.max_steps=30"])["trainer"]["stop_at_step"] == 20


def test_an_override_error_does_not_blame_the_recipe(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text("trainer:\n  max_steps: 10\n")
    with pytest.raises(ValueError, match=r"^trainer.val_every must be >= 1, got 0$"):
        load_config(path, ["trainer.val_every=0"])


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("trainer.max_step=4", r"^unknown config key 'trainer.max_step' \(did you mean"),
        ("trainer.checkpoint_minute=4", r"did you mean 'checkpoint_minutes'"),
        ("optimiser.lr=1", r"^unknown config key 'optimiser' \(did you mean 'optimizer'\?\)"),
        ("eval.modes=slide", r"did you mean 'mode'\?"),
        ("trainer", r"must look like key.sub=value"),
        ("trainer..max_steps=3", r"has an empty key part"),
        ("trainer.max_steps=3", None),
    ],
)
def test_unknown_keys_and_malformed_overrides(override, match):
    if match is None:
        load_config("synthlt-fcn-quick", [override])
        return
    with pytest.raises(ValueError, match=match):
        load_config("synthlt-fcn-quick", [override])


def test_override_inside_a_scalar_override_is_refused():
    with pytest.raises(ValueError, match=r"sets a key inside a value set by another one"):
        load_config(None, ["seed=3", "seed.x=1"])


# validate_config on hand-made dicts


def _defaults():
    return copy.deepcopy(DEFAULTS)


def test_validate_config_returns_its_input_unchanged():
    config = _defaults()
    before = copy.deepcopy(config)
    assert validate_config(config) is config and config == before


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda c: c.__setitem__("trainer", 5), r"^trainer must be a mapping, got 5$"),
        (lambda c: c.pop("optimizer"), r"config is missing \['optimizer'\]"),
        (lambda c: c["trainer"].pop("max_steps"), r"config is missing \['trainer.max_steps'\]"),
        (lambda c: c.__setitem__("epochs", 3), r"unknown config key 'epochs'"),
        (lambda c: c["data"].__setitem__("batchsize", 3), r"unknown config key 'data.batchsize'"),
        (lambda c: c["model"].pop("name"), r"^model.name must be a non-empty string"),
        (lambda c: c.__setitem__("description", None), r"^description must be a string"),
    ],
)
def test_validate_config_refuses_hand_made_dicts(edit, match):
    config = _defaults()
    edit(config)
    with pytest.raises(ValueError, match=match):
        validate_config(config)


def test_validate_config_refuses_a_non_mapping():
    with pytest.raises(ValueError, match=r"a config must be a mapping, got \[\]"):
        validate_config([])


def test_precisions_are_lightnings():
    connector = pytest.importorskip("lightning.fabric.connector")
    literals = typing.get_args(connector._PRECISION_INPUT)  # a Union of Literals
    values = [value for literal in literals for value in typing.get_args(literal)]
    assert sorted(map(repr, values)) == sorted(map(repr, PRECISIONS))


def test_new_trainer_defaults():
    trainer = DEFAULTS["trainer"]
    assert trainer["checkpoint_every"] is None and trainer["checkpoint_minutes"] == 10.0
    assert trainer["save_best"] is False and trainer["threads"] is None


def test_validation_is_fast():
    config = load_config("cityscapes-fcn-r101")
    start = time.perf_counter()
    for _ in range(100):
        validate_config(config)
    assert (time.perf_counter() - start) / 100 < 0.005
