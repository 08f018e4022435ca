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


@pytest.mark.parametrize(
    "recipe", ["cityscapes-fcn-hr48", "ade20k-fcn-hr48", "pascal-context-fcn-hr48"]
)
def test_official_recipes_dry_run(recipe):
    """The authors' configs: their seed, SAR weights and HRNetV2-W48, whose SAR embedding adds
    the paper's 1.56 M training-only parameters (built on the meta device: nothing computed)."""
    import torch

    from semantic_anchors.models import create_model
    from semantic_anchors.regularizers.registry import build_regularizer

    config = load_config(recipe)
    assert config["seed"] == 1270964153
    reg = dict(config["regularizer"])
    assert (reg["lambda_p2a"], reg["lambda_aux"], reg["tau"], reg["delta"]) == (0.1, 1.0, 0.9, 0.8)
    num_classes = {"cityscapes": 19, "ade20k": 150, "pascal-context-59": 59}[config["data"]["name"]]
    with torch.device("meta"):
        model = create_model(config["model"]["name"], num_classes=num_classes)
        sar = build_regularizer(reg.pop("name"), num_classes, model.feat_dim, dense=True, **reg)
    expected = {19: 65_858_659, 150: 65_953_110, 59: 65_887_499}[num_classes]
    assert sum(p.numel() for p in model.parameters()) == expected
    assert sum(p.numel() for p in sar.parameters()) == 1_560_960
