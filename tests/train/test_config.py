import pytest

from semantic_anchors.train.config import RECIPES_DIR, load_config


def test_overrides_are_parsed_as_yaml_and_nested():
    config = load_config(
        "synthlt-fcn-quick",
        ["trainer.max_steps=40", "trainer.devices=2", "regularizer.name=sar",
         "regularizer.lambda_p2a=0.05", "seed=3", "data.options={num_images: 8}"],
    )  # fmt: skip
    assert config["trainer"]["max_steps"] == 40 and config["trainer"]["devices"] == 2
    assert config["regularizer"] == {"name": "sar", "lambda_p2a": 0.05}
    assert config["seed"] == 3 and config["data"]["options"] == {"num_images": 8}
    assert config["data"]["name"] == "synthlt"  # from the recipe, untouched


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("trainer.max_step=4", r"unknown config key 'trainer.max_step' \(did you mean 'max_steps'"),
        ("optimiser.lr=1", r"unknown config key 'optimiser' \(did you mean 'optimizer'\?\)"),
        ("data.batchsize=3", r"valid keys: \['batch_size'"),
        ("trainer", r"must look like key.sub=value"),
    ],
)
def test_typos_are_errors_listing_valid_keys(override, match):
    with pytest.raises(ValueError, match=match):
        load_config("synthlt-fcn-quick", [override])


def test_unknown_recipe_lists_available():
    with pytest.raises(FileNotFoundError, match=r"synthlt-fcn-quick"):
        load_config("synthlt-fcn-quik")


def test_unknown_key_in_yaml_file(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("trainer:\n  max_stepz: 3\n")
    with pytest.raises(ValueError, match=r"'trainer.max_stepz'"):
        load_config(path)


def test_yaml_is_loaded_safely(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(Exception, match="could not determine a constructor"):
        load_config(path)


@pytest.mark.parametrize("recipe", sorted(p.stem for p in RECIPES_DIR.glob("*.yaml")))
def test_every_recipe_loads(recipe):
    config = load_config(recipe)
    assert config["model"]["name"] and config["data"]["name"]


@pytest.mark.parametrize("recipe", sorted(p.stem for p in RECIPES_DIR.glob("[!_]*.yaml")))
def test_every_recipe_names_real_components(recipe):
    from semantic_anchors.data import list_datasets
    from semantic_anchors.models import list_models
    from semantic_anchors.regularizers.registry import build_regularizer

    config = load_config(recipe)
    assert config["data"]["name"] in list_datasets()
    assert config["model"]["name"] in list_models()
    options = {k: v for k, v in config["regularizer"].items() if k != "name"}
    build_regularizer(config["regularizer"]["name"], 19, 64, dense=True, **options)
    assert config["trainer"]["max_steps"] % config["trainer"]["val_every"] == 0
