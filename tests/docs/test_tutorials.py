"""The tutorials in docs/tutorials/ against the code and the published results they quote.

Their ```python blocks run in tests/docs/test_code_blocks.py. Here: the loss weight own-loop.md quotes
equals the one the tuned ``compare`` suite published; the mmseg config of mmseg.md loads with
mmengine's ``Config`` and a tiny version of it trains one step through mmseg's registry; the
shipped SegFormer recipe of segformer.md builds and trains two steps; the scale table of
gpu-reproduction.md is docs/results/scale.md's, and its CPU column is what the recipes build.
"""

from __future__ import annotations

import copy
import csv
import importlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
TUTORIALS = ROOT / "docs" / "tutorials"
COMPARE = ROOT / "docs" / "results" / "compare" / "results.json"
SCALE = ROOT / "docs" / "results" / "scale.md"
SEGFORMER_RECIPE = "synthlt-segformer-quick"


def section(path: Path, heading: str) -> str:
    """The text of ``path`` from the ``## heading`` line to the next ``## `` heading."""
    text = path.read_text()
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def python_block(text: str) -> str:
    block = re.search(r"```python\n(.*?)```", text, flags=re.S)
    assert block is not None, "no ```python block"
    return block.group(1)


# ------------------------------------------------------------------------------- own-loop.md
def published_sar_weights() -> dict[str, float]:
    """``lambda_p2a`` of the trial the tuned ``compare`` suite chose, per dataset."""
    tuning = json.loads(COMPARE.read_text())["tuning"]["datasets"]
    chosen = {}
    for dataset, methods in tuning.items():
        sar = methods["sar"]
        chosen[dataset] = float(sar["trials"][sar["chosen"]]["set"]["regularizer.lambda_p2a"])
    return chosen


def test_the_own_loop_tutorial_quotes_the_published_sar_weights() -> None:
    text = section(TUTORIALS / "own-loop.md", "Which loss weight")
    rows = re.findall(r"^\| `([\w-]+)` \| ([0-9.]+) \| ([0-9.]+) \|$", text, flags=re.M)
    written = {dataset: float(chosen) for dataset, chosen, _ in rows}
    assert written == published_sar_weights()
    assert {float(paper) for _, _, paper in rows} == {0.1}  # the paper's default, as sar.md says
    from semantic_anchors import SemanticAnchorRegularizer

    assert SemanticAnchorRegularizer(2, 4).lambda_p2a == 0.1


# ---------------------------------------------------------------------------------- mmseg.md
MMSEG_CONFIG = "fcn_r101-d8-sar_4xb2-80k_cityscapes-512x1024.py"
TINY_IMAGE = (37, 45)  # padded to (40, 48) by the data preprocessor, the padding is ignore
SAR_LOG_KEYS = {"sar.aux", "sar.p2a", "sar.gate_open", "sar.num_confident", "sar.min_anchor_prob"}


@pytest.fixture(scope="module")
def mmseg_config(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The config of mmseg.md, saved under ``configs/sar/`` next to mmseg's shipped configs (as
    in a checkout) and loaded by mmengine's ``Config``, whose ``custom_imports`` import the
    plug-in (with the placeholder ``mmcv.ops`` that mmcv-lite needs)."""
    from tests._helpers.mmseg_import import imported_mmseg

    with imported_mmseg():
        shipped = Path(importlib.import_module("mmseg").__file__).parent / ".mim" / "configs"
        if not shipped.is_dir():
            pytest.skip("this mmseg install ships no configs")
        configs = tmp_path_factory.mktemp("configs")
        for name in ("fcn", "_base_"):
            (configs / name).symlink_to(shipped / name, target_is_directory=True)
        (configs / "sar").mkdir()
        path = configs / "sar" / MMSEG_CONFIG
        path.write_text(python_block(section(TUTORIALS / "mmseg.md", "The config")))
        config_module = importlib.import_module("mmengine.config")
        return config_module.Config.fromfile(str(path))


def tiny_segmentor_config(model: dict[str, Any]) -> dict[str, Any]:
    """The config's segmentor at a size for one CPU step: ResNetV1c-18 with 8 base channels and
    narrow heads; BN for SyncBN (one process); no ImageNet weights. Type, ``sar``, the heads'
    classes and losses stay as the config has them."""
    tiny = copy.deepcopy(model)
    norm = {"type": "BN", "requires_grad": True}
    tiny["pretrained"] = None
    tiny["data_preprocessor"]["size"] = (40, 48)
    tiny["backbone"].update(depth=18, stem_channels=8, base_channels=8, norm_cfg=norm)
    tiny["decode_head"].update(in_channels=64, channels=16, norm_cfg=norm)
    tiny["auxiliary_head"].update(in_channels=32, channels=8, norm_cfg=norm)
    return tiny


def tiny_batch(num_classes: int) -> dict[str, Any]:
    """Two images as mmseg's data loader yields them (before the data preprocessor)."""
    structures = importlib.import_module("mmseg.structures")
    pixel_data = importlib.import_module("mmengine.structures").PixelData
    generator = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for _ in range(2):
        inputs.append(torch.randint(0, 256, (3, *TINY_IMAGE), generator=generator).float())
        labels = torch.randint(0, num_classes, (1, *TINY_IMAGE), generator=generator)
        labels[torch.rand(labels.shape, generator=generator) < 0.1] = 255
        sample = structures.SegDataSample(gt_sem_seg=pixel_data(data=labels))
        sample.set_metainfo({"img_shape": TINY_IMAGE, "ori_shape": TINY_IMAGE})
        samples.append(sample)
    return {"inputs": inputs, "data_samples": samples}


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
def test_the_mmseg_tutorial_config_trains_a_step_through_the_registry(mmseg_config: Any) -> None:
    from tests._helpers.mmseg_import import imported_mmseg

    config = mmseg_config
    assert config.custom_imports.imports == ["semantic_anchors.integrations.mmseg"]
    assert config.model.type == "SAREncoderDecoder"
    assert config.model.backbone.depth == 101  # mmseg's FCN-R101 baseline underneath
    assert config.model.pretrained == "open-mmlab://resnet101_v1c"
    assert config.train_cfg.max_iters == 80000 and config.train_dataloader.batch_size == 2
    assert config.model.sar.to_dict() == {
        "lambda_aux": 1.0, "lambda_p2a": 0.1, "tau": 0.9, "delta": 0.8, "momentum": 0.999,
    }  # fmt: skip

    with imported_mmseg() as mmseg:
        scope = importlib.import_module("mmengine.registry").DefaultScope
        optim = importlib.import_module("mmengine.optim")
        config_dict = importlib.import_module("mmengine.config").ConfigDict
        torch.manual_seed(0)
        with scope.overwrite_default_scope("mmseg"):  # as mmseg's runner builds it
            model = mmseg.MODELS.build(config_dict(tiny_segmentor_config(config.model.to_dict())))
            wrapper = optim.build_optim_wrapper(model, config.optim_wrapper)
        assert type(model).__name__ == "SAREncoderDecoder"
        assert (model.sar.num_classes, model.sar.feat_dim) == (19, 16)
        for key, value in config.model.sar.items():
            assert getattr(model.sar, key) == value, key
        before = {name: p.detach().clone() for name, p in model.sar.named_parameters()}

        model.train()
        log_vars = model.train_step(tiny_batch(19), wrapper)  # what the runner's loop calls

    assert {"loss", "loss_sar", "decode.loss_ce", "aux.loss_ce"} | SAR_LOG_KEYS <= set(log_vars)
    summed = log_vars["decode.loss_ce"] + log_vars["aux.loss_ce"] + log_vars["loss_sar"]
    assert torch.isfinite(log_vars["loss"]) and torch.allclose(log_vars["loss"], summed)
    torch.testing.assert_close(log_vars["sar.aux"] + log_vars["sar.p2a"], log_vars["loss_sar"])
    # The optimizer step (the wrapper clears the gradients after it) moved SAR's embedding.
    for name, parameter in model.sar.named_parameters():
        assert torch.isfinite(parameter).all(), name
    assert any(not torch.equal(p, before[n]) for n, p in model.sar.named_parameters())


# ------------------------------------------------------------------------------ segformer.md
def test_the_segformer_recipe_trains_two_steps_from_the_command_line(tmp_path, capsys) -> None:
    pytest.importorskip("transformers")
    from semantic_anchors.cli import main
    from semantic_anchors.train.config import load_config

    config = load_config(SEGFORMER_RECIPE)
    assert config["model"]["name"] == "segformer_b0" and config["regularizer"]["name"] == "sar"
    assert config["model"]["config_overrides"]["decoder_hidden_size"] == 64
    run = tmp_path / "run"
    tiny = [
        "trainer.max_steps=2", "trainer.val_every=2", "trainer.log_every=1",
        "trainer.progress_bar=false", "data.options={num_images: 16}",
        "data.val_options={num_images: 8}", "data.batch_size=4", "data.val_batch_size=8",
        "data.num_workers=0",
    ]  # fmt: skip
    assert main(["train", SEGFORMER_RECIPE, "--out", str(run), "--set", *tiny]) == 0
    assert "final validation at step 2: mIoU" in capsys.readouterr().out
    with open(run / "logs" / "train" / "metrics.csv") as file:
        logged = [row for row in csv.DictReader(file) if row["train/loss"]]
    assert len(logged) == 2
    losses = torch.tensor(
        [[float(row[k]) for k in ("train/loss", "reg/loss_aux")] for row in logged]
    )
    assert torch.isfinite(losses).all()
    saved = load_config(run / "config.yaml")
    assert saved["model"] == config["model"] and saved["regularizer"] == config["regularizer"]


def test_the_segformer_recipe_header_gives_its_commands() -> None:
    from semantic_anchors._resources import RECIPES_DIR

    header = [line for line in (RECIPES_DIR / f"{SEGFORMER_RECIPE}.yaml").read_text().splitlines()
              if line.startswith("#")]  # fmt: skip
    found = (re.search(r"(semantic-anchors train .*)$", line) for line in header)
    commands = [match.group(1) for match in found if match]
    assert commands == [
        f"semantic-anchors train {SEGFORMER_RECIPE}",
        f"semantic-anchors train {SEGFORMER_RECIPE} --set regularizer.name=none",
    ]
    text = (TUTORIALS / "segformer.md").read_text()
    assert all(command in text for command in commands)


# ------------------------------------------------------------------ gpu-reproduction.md, scale.md
CPU_RECIPES = {  # the scale table's CPU rows: the recipe each dataset's suites run
    "`synthlt`": "synthlt-fcn-quick",
    "`fashion-scenes-lt`": "fashion-scenes-fcn-quick",
    "Fashion-MNIST-LT (`fashion-lt`, IF 100)": "fashion-lt-smallcnn-quick",
}
PAPER_DATASETS = {  # the paper rows: the shipped recipes' dataset name and its classes
    "Cityscapes": ("cityscapes", 19),
    "ADE20K": ("ade20k", 150),
    "Pascal-Context-59": ("pascal-context-59", 59),
    "CIFAR-100-LT (IF 100)": ("cifar100-lt", 100),
}


def scale_rows(text: str) -> dict[str, dict[str, str]]:
    """The scale table's rows by dataset cell, each a dict of column name -> cell."""
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    names = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[1:]:
        cells = dict(zip(names, (cell.strip() for cell in line.strip("|").split("|")), strict=True))
        rows[cells["dataset"]] = cells
    return rows


def number(cell: str) -> int:
    return int(cell.replace(",", ""))


def model_parameters(cell: str) -> dict[str, str]:
    """``{model: written count}`` from "`name`: 368,701" or "`name`: 68.49 M, ..." cells."""
    return dict(re.findall(r"`(\w+)`: ([\d,]+|[\d.]+ M)(?:,|$)", cell))


def written(count: int, like: str) -> str:
    """``count`` as the table writes it: "68.49 M" when ``like`` is in millions, else "368,701"."""
    return f"{count / 1e6:.2f} M" if like.endswith(" M") else f"{count:,}"


def parameter_count(name: str, num_classes: int, in_channels: int = 3) -> int:
    from semantic_anchors.models import create_model

    with torch.device("meta"):  # shapes only: nothing is allocated or computed
        model = create_model(name, num_classes=num_classes, in_channels=in_channels)
    return sum(p.numel() for p in model.parameters())


def test_the_gpu_tutorial_shows_the_scale_table_of_results() -> None:
    table = [line for line in SCALE.read_text().splitlines() if line.startswith("|")]
    tutorial = (TUTORIALS / "gpu-reproduction.md").read_text().splitlines()
    start = tutorial.index(table[0])
    assert tutorial[start : start + len(table)] == table


def test_the_scale_table_cpu_rows_are_what_the_recipes_build() -> None:
    from semantic_anchors.data import build_dataset
    from semantic_anchors.train.config import load_config

    rows = scale_rows(SCALE.read_text())
    assert {key for key, row in rows.items() if row[""] == "CPU"} == set(CPU_RECIPES)
    for key, recipe in CPU_RECIPES.items():
        row, config = rows[key], load_config(recipe)
        data, trainer = config["data"], config["trainer"]
        try:
            dataset = build_dataset(data["name"], root=data["root"], **data["options"])
        except FileNotFoundError:
            pytest.skip("needs the Fashion-MNIST files (apt-get install dataset-fashion-mnist)")
        image, _ = dataset[0]  # (channels, H, W)
        colour = {1: "grey", 3: "RGB"}[image.shape[0]]
        assert row["training input"] == f"{image.shape[2]}x{image.shape[1]} {colour}", key
        assert number(row["classes"]) == dataset.num_classes, key
        assert number(row["training images"]) == len(dataset), key
        name = config["model"]["name"]
        count = parameter_count(name, dataset.num_classes, in_channels=image.shape[0])
        assert model_parameters(row["model: parameters"]) == {name: f"{count:,}"}, key
        steps, batch = row["steps x batch"].split(" x ")
        assert (number(steps), number(batch)) == (trainer["max_steps"], data["batch_size"]), key


def test_the_scale_table_paper_rows_are_the_shipped_paper_recipes() -> None:
    from semantic_anchors._resources import RECIPES_DIR
    from semantic_anchors.data.longtail import longtail_counts
    from semantic_anchors.train.config import load_config

    rows = scale_rows(SCALE.read_text())
    assert {key for key, row in rows.items() if row[""] == "paper"} == set(PAPER_DATASETS)
    recipes = [load_config(path.stem) for path in sorted(RECIPES_DIR.glob("[!_]*.yaml"))]
    for key, (dataset, num_classes) in PAPER_DATASETS.items():
        row = rows[key]
        assert number(row["classes"]) == num_classes, key
        configs = [c for c in recipes if c["data"]["name"] == dataset]
        counts = model_parameters(row["model: parameters"])
        assert set(counts) == {c["model"]["name"] for c in configs}, key
        for name, text in counts.items():
            assert text == written(parameter_count(name, num_classes), like=text), (key, name)
        steps, batch = (number(n) for n in row["steps x batch"].split(" x "))
        for config in configs:
            trainer = config["trainer"]
            assert steps == trainer["max_steps"], config["name"]
            assert batch == config["data"]["batch_size"] * trainer["devices"], config["name"]
    assert number(rows["CIFAR-100-LT (IF 100)"]["training images"]) == sum(
        longtail_counts(500, 100, 100)
    )
