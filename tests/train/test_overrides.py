"""``--set`` overrides compose, and switching a registry-backed name drops the old name's options."""

import inspect

import pytest
import torch
import yaml

from semantic_anchors._resources import RECIPES_DIR, list_yaml
from semantic_anchors.cli import build_parser, main
from semantic_anchors.losses.registry import LOSSES
from semantic_anchors.regularizers.registry import REGULARIZERS
from semantic_anchors.train.config import load_config

RECIPES = list_yaml(RECIPES_DIR)  # what `semantic-anchors recipes` lists
SAR_OPTIONS = ["delta", "lambda_aux", "lambda_p2a", "momentum", "tau"]  # _paper-seg-base's


# ----------------------------------------------------------------------------- the parser
@pytest.mark.parametrize(
    "prefix",
    [["train", "synthlt-fcn-quick"], ["eval", "runs/x"], ["bench", "ablation"],
     ["convert-official", "x.pth", "--recipe", "r", "--out", "o"]],
)  # fmt: skip
def test_repeated_set_options_compose_in_order(prefix):
    argv = [*prefix, "--set", "a=1", "b=2", "--set", "c=3", "--set", "a=4"]
    assert build_parser().parse_args(argv).set == ["a=1", "b=2", "c=3", "a=4"]
    assert build_parser().parse_args(prefix).set == []


def test_repeated_set_reaches_the_config_and_a_later_pair_wins(capsys):
    argv = ["train", "--print-config", "synthlt-fcn-quick", "--set", "model.prototype_head=protoseg",
            "--set", "regularizer.name=protoseg", "seed=3", "--set", "seed=5"]  # fmt: skip
    assert main(argv) == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["model"] == {"name": "fcn_small", "prototype_head": "protoseg"}
    assert config["regularizer"] == {"name": "protoseg"}
    assert config["seed"] == 5


# ----------------------------------------------------------------------------- dropping options
def test_ce_baseline_of_a_paper_recipe_drops_the_sar_options_with_a_note(capsys):
    assert main(["train", "--print-config", "cityscapes-fcn-hr48",
                 "--set", "regularizer.name=none"]) == 0  # fmt: skip
    out, err = capsys.readouterr()
    assert yaml.safe_load(out)["regularizer"] == {"name": "none"}
    assert err == f"note: regularizer sar -> none: dropped {', '.join(SAR_OPTIONS)}\n"


def test_options_the_new_name_takes_are_kept(capsys):
    config = load_config("cityscapes-fcn-hr48", ["regularizer.name=cr"])
    assert config["regularizer"] == {"name": "cr", "lambda_p2a": 0.1}  # CR takes lambda_p2a
    assert capsys.readouterr().err == (
        "note: regularizer sar -> cr: dropped delta, lambda_aux, momentum, tau\n"
    )
    base = {"regularizer": {"name": "sar", "ignore_index": 0, "validate": False, "tau": 0.5}}
    config = load_config(base, ["regularizer.name=center"])
    assert config["regularizer"] == {"name": "center", "ignore_index": 0, "validate": False}
    assert capsys.readouterr().err == "note: regularizer sar -> center: dropped tau\n"


def test_no_note_when_the_name_stays_or_nothing_is_dropped(capsys):
    load_config("cityscapes-fcn-hr48", ["regularizer.name=SAR", "loss.name=focal"])
    load_config("synthlt-fcn-quick", ["regularizer.name=sar"])
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["regularizer.name=none", "regularizer.lambda_p2a=0.05"],
         r"regularizer 'none' takes no options, got \['lambda_p2a'\]"),
        (["regularizer.tau=0.5", "regularizer.name=cr"],  # before the name: the same
         r"regularizer 'cr' does not take option\(s\) \['tau'\]; valid options: \["),
    ],
)  # fmt: skip
def test_an_option_set_with_the_new_name_that_does_not_fit_stays_an_error(overrides, message):
    from semantic_anchors.regularizers.registry import build_regularizer

    config = load_config("cityscapes-fcn-hr48", overrides)
    options = {k: v for k, v in config["regularizer"].items() if k != "name"}
    assert set(options) <= {"lambda_p2a", "tau"}  # only what this line set (and CR's lambda_p2a)
    with pytest.raises(ValueError, match=message):
        build_regularizer(config["regularizer"]["name"], 5, 8, dense=True, **options)


def test_an_explicit_misfit_fails_the_train_command(tmp_path, capsys):
    argv = ["train", "synthlt-fcn-quick", "--out", str(tmp_path / "r"), "--set",
            "regularizer.name=sar", "data.options={num_images: 4}", "data.num_workers=0",
            "--set", "regularizer.name=none", "regularizer.tau=0.5"]  # fmt: skip
    assert main(argv) == 2
    assert "regularizer 'none' takes no options, got ['tau']" in capsys.readouterr().err


def test_loss_model_prototype_head_and_calibration_switches(capsys):
    config = load_config({"loss": {"name": "focal", "gamma": 1.0, "alpha": 0.5}}, ["loss.name=ce"])
    assert config["loss"] == {"name": "ce"}
    model = {"name": "fcn_small", "channels": 16, "in_channels": 3, "dropout": 0.2,
             "prototype_head": "protoseg", "prototype_options": {"num_prototypes": 4}}  # fmt: skip
    config = load_config({"model": model}, ["model.name=fcn_hr18"])
    assert config["model"] == {"name": "fcn_hr18", "in_channels": 3, "dropout": 0.2,
                               "prototype_head": "protoseg",
                               "prototype_options": {"num_prototypes": 4}}  # fmt: skip
    config = load_config({"model": model}, ["model.prototype_head=null"])
    assert (config["model"]["prototype_head"], config["model"]["prototype_options"]) == (None, None)
    finetune = {"calibration": "disalign", "calibration_options": {"gate": "linear"}}
    config = load_config({"finetune": finetune}, ["finetune.calibration=lws"])
    finetune = config["finetune"]
    assert (finetune["calibration"], finetune["calibration_options"]) == ("lws", None)
    assert capsys.readouterr().err.splitlines() == [
        "note: loss focal -> ce: dropped alpha, gamma",
        "note: model fcn_small -> fcn_hr18: dropped channels",
        "note: model.prototype_head protoseg -> null: dropped prototype_options.num_prototypes",
        "note: finetune.calibration disalign -> lws: dropped calibration_options.gate",
    ]


def test_a_recipe_over_its_base_and_a_resumed_config_drop_the_same_way(tmp_path, capsys):
    (tmp_path / "ce.yaml").write_text("base: cityscapes-fcn-r101\nregularizer: {name: none}\n")
    assert load_config(tmp_path / "ce.yaml")["regularizer"] == {"name": "none"}
    saved = load_config("cityscapes-fcn-r101")  # what a run folder holds
    assert load_config(saved, ["regularizer.name=none"])["regularizer"] == {"name": "none"}
    notes = capsys.readouterr().err.splitlines()
    assert notes == [f"note: regularizer sar -> none: dropped {', '.join(SAR_OPTIONS)}"] * 2


# ----------------------------------------------------------------------------- every combination
NUM_CLASSES, FREQUENCIES = 5, [400, 200, 100, 50, 25]
TINY_MODELS = {"segmentation": "fcn_small", "classification": "small_cnn"}


@pytest.fixture
def tiny_models(monkeypatch):
    """``create_model`` as the training module calls it, with a recipe's (possibly large) model
    swapped for the quick recipes' model of the same task: everything else is the real path."""
    import semantic_anchors.train.parts as parts
    from semantic_anchors.models import create_model, get_model_entry

    def tiny(name, num_classes, *, in_channels, prototype_head=None, prototype_options=None,
             **options):  # fmt: skip
        assert set(options) <= set(inspect.signature(get_model_entry(name).builder).parameters)
        return create_model(
            TINY_MODELS[get_model_entry(name).task], num_classes=num_classes,
            in_channels=in_channels, prototype_head=prototype_head,
            prototype_options=prototype_options,
        )  # fmt: skip

    monkeypatch.setattr(parts, "create_model", tiny)


def _one_training_step(config: dict) -> tuple[torch.nn.Module, torch.Tensor]:
    """Build the training module from ``config`` on tiny data and run one training step."""
    from semantic_anchors.data.longtail import head_body_tail
    from semantic_anchors.models import get_model_entry
    from semantic_anchors.train.module import AnchorModule

    task = get_model_entry(config["model"]["name"]).task
    data_info = {
        "task": task, "num_classes": NUM_CLASSES, "in_channels": 3,
        "class_names": [f"c{i}" for i in range(NUM_CLASSES)],
        "groups": head_body_tail(FREQUENCIES), "class_frequencies": FREQUENCIES,
        "ignore_index": 255,
    }  # fmt: skip
    module = AnchorModule(config, data_info)
    images = torch.randn(4, 3, 32, 32)
    if task == "segmentation":
        targets = torch.randint(0, NUM_CLASSES, (4, 32, 32))
        targets[:, :4] = 255
    else:
        targets = torch.arange(4) % NUM_CLASSES
    loss = module.training_step((images, targets), 0)
    loss.backward()
    return module, loss


def _expected_section(recipe: str, section: str, name: str) -> dict:
    """The recipe's options of ``section`` that ``name``'s class takes (by its signature), under
    the new name: what switching to ``name`` must resolve to."""
    cls = (REGULARIZERS if section == "regularizer" else LOSSES)[name]
    own = {k: v for k, v in load_config(recipe)[section].items() if k != "name"}
    takes = set() if cls is None else set(inspect.signature(cls).parameters)
    return {"name": name, **{k: v for k, v in own.items() if k in takes}}


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_builds_and_steps_with_every_regularizer_and_loss(recipe, tiny_models):
    """For each shipped recipe, ``regularizer.name=R`` for every R and ``loss.name=L`` for every
    L resolve, and the training module builds and takes a finite step with what they resolve
    to (the recipe's model swapped for a tiny one of its task)."""
    assert len(REGULARIZERS) == 8 and len(LOSSES) == 7  # the registries this walks
    for override in [*(f"regularizer.name={r}" for r in REGULARIZERS),
                     *(f"loss.name={name}" for name in LOSSES)]:  # fmt: skip
        config = load_config(recipe, ["trainer.log_every=1000", override])
        section, name = override.split("=")[0].split(".")[0], override.split("=")[1]
        assert config[section] == _expected_section(recipe, section, name), override
        module, loss = _one_training_step(config)
        assert torch.isfinite(loss), (recipe, override)
        if section == "loss":
            assert type(module.criterion) is LOSSES[name]
            continue
        cls = REGULARIZERS[name]
        assert module.regularizer is None if cls is None else type(module.regularizer) is cls
        for key, value in config["regularizer"].items():  # the kept options took effect
            if key not in ("name", "ignore_index", "validate"):
                assert getattr(module.regularizer, key) == value, (recipe, override, key)


@pytest.mark.parametrize("recipe", RECIPES)
def test_protoseg_head_with_protoseg_regularizer_on_every_recipe(recipe, tiny_models):
    """ProtoSeg's two lines train on every segmentation recipe; the other combinations are the
    documented refusals."""
    both = ["model.prototype_head=protoseg", "regularizer.name=protoseg"]
    config = load_config(recipe, ["trainer.log_every=1000", *both])
    from semantic_anchors.models import get_model_entry

    if get_model_entry(config["model"]["name"]).task == "classification":
        with pytest.raises(ValueError, match=r"ProtoSeg replaces a segmentation classifier"):
            _one_training_step(config)
        return
    module, loss = _one_training_step(config)
    assert torch.isfinite(loss) and type(module.model).__name__ == "ProtoSegSegmentor"
    head_only = load_config(recipe, ["model.prototype_head=protoseg", "regularizer.name=sar"])
    with pytest.raises(ValueError, match=r"needs regularizer.name=protoseg .* got 'sar'"):
        _one_training_step(head_only)
