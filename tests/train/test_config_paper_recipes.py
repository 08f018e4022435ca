"""The paper recipes' documented CE baseline (`--set regularizer.name=none`, named in each
recipe's comment) trains one step and validates, from the command line, on a tiny dataset written
in the recipe's own on-disk layout."""

import re
from pathlib import Path

import pytest

from semantic_anchors._resources import RECIPES_DIR
from semantic_anchors.cli import main
from semantic_anchors.train.config import load_config
from tests._helpers.writers import (
    write_ade20k,
    write_cifar100,
    write_cityscapes,
    write_pascal_context,
)

WRITERS = {
    "cityscapes": lambda root: write_cityscapes(root, size=(64, 128)),
    "ade20k": lambda root: write_ade20k(root, size=(64, 96)),
    "pascal-context-59": lambda root: write_pascal_context(root, size=(64, 96)),
    "cifar100-lt": lambda root: write_cifar100(root, train_per_class=2),
    "synthlt": lambda root: None,  # generated in memory (synthlt-segformer-quick): nothing to write
}


def documented_baselines() -> list[str]:
    """Recipes whose comment documents the CE baseline override."""
    return [
        path.stem for path in sorted(RECIPES_DIR.glob("*.yaml"))
        if not path.name.startswith("_")
        and re.search(r"^#.*--set regularizer\.name=none", path.read_text(), re.MULTILINE)
    ]  # fmt: skip


def test_the_paper_recipes_document_their_baseline():
    names = documented_baselines()
    assert {"cityscapes-fcn-hr48", "ade20k-fcn-hr48", "pascal-context-fcn-hr48"} <= set(names)
    assert all(load_config(n)["data"]["name"] in WRITERS for n in names)


@pytest.mark.slow
@pytest.mark.parametrize("recipe", documented_baselines())
def test_the_documented_baseline_trains_a_step_on_the_recipes_layout(tmp_path, recipe, capsys):
    config = load_config(recipe)
    data = config["data"]["name"]
    root = tmp_path / "data"
    WRITERS[data](root)
    tiny = [
        f"data.root={root}", "data.batch_size=2", "data.val_batch_size=1", "data.num_workers=0",
        "trainer.max_steps=1", "trainer.val_every=1", "trainer.accelerator=cpu",
        "trainer.devices=1", "trainer.strategy=auto", "trainer.sync_batchnorm=false",
        "trainer.progress_bar=false", "trainer.limit_val_batches=1",
    ]  # fmt: skip
    if data == "cifar100-lt":  # 2 images per class written: the profile starts there
        tiny.append("data.options={imbalance_factor: 2, n_max: 2}")
    else:  # segmentation: small crops of the small images
        # 64-pixel crops: HRNet's 1/32 branch then has 2 x 2 pixels per image, so its BN
        # statistics over a batch of 2 are not degenerate (1 x 1 maps blow up in one step).
        tiny += ["data.crop_size=[64, 64]", "data.transforms={base_size: [96, 64]}"]
        if config["eval"]["mode"] == "slide":
            tiny += ["eval.crop_size=[64, 64]", "eval.stride=[32, 32]"]
    if config["optimizer"]["warmup_steps"] >= 1:  # the one-step run is shorter than the warmup
        tiny.append("optimizer.warmup_steps=0")
    run = tmp_path / "run"
    code = main(["train", recipe, "--out", str(run), "--set", "regularizer.name=none", *tiny])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "dropped" in captured.err  # the recipe's SAR options went with the name
    assert (run / "metrics.json").is_file()
    assert load_config(Path(run) / "config.yaml")["regularizer"] == {"name": "none"}
