import json
import subprocess
import sys

import pytest
import yaml

from semantic_anchors.cli import main
from tests._helpers.runs import TINY


def test_train_then_eval_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "synthlt-fcn-quick", "--out", str(out), "--set", *TINY,
                 "trainer.max_steps=4", "regularizer.name=sar"])  # fmt: skip
    assert code == 0
    assert "final validation at step 4: mIoU" in capsys.readouterr().out
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["regularizer"]["name"] == "sar" and config["trainer"]["max_steps"] == 4
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("mIoU", "aAcc", "mAcc", "head_mIoU", "body_mIoU", "tail_mIoU", "IoU", "groups"):
        assert key in metrics, key
    assert len(metrics["IoU"]) == len(metrics["class_names"]) == 13
    assert (out / "checkpoints/last.ckpt").is_file()
    assert (out / "logs/train/metrics.csv").is_file()

    assert main(["eval", str(out), "--json", str(tmp_path / "eval.json")]) == 0
    again = json.loads((tmp_path / "eval.json").read_text())
    assert again["mIoU"] == pytest.approx(metrics["mIoU"], abs=1e-9)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "no-such-recipe"], "is neither a YAML file nor a name"),
        (["train", "synthlt-fcn-quick", "--set", "trainer.max_stepz=3"], "did you mean 'max_steps'"),
        (["train", "synthlt-fcn-quick", "--set", "regularizer.name=sarr"], "unknown regularizer 'sarr'"),
        (["train", "synthlt-fcn-quick", "--set", "regularizer.name=sar", "regularizer.lamda=1"],
         "does not take option(s) ['lamda']"),
        (["train", "synthlt-fcn-quick", "--set", "model.name=fcn_smol"], "fcn_small"),
        (["eval", "/nonexistent/run"], "no checkpoint at"),
    ],
)  # fmt: skip
def test_bad_input_is_a_clear_error(argv, message, capsys, tmp_path):
    if argv[0] == "train":
        argv = [*argv[:2], "--out", str(tmp_path / "r"), *argv[2:]]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_console_script_is_installed():
    out = subprocess.run(
        [sys.executable, "-m", "semantic_anchors.cli", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0 and "train" in out.stdout and "demo" in out.stdout


def test_bf16_mixed_precision_keeps_sar_state_float32(tmp_path):
    from semantic_anchors.train import train
    from semantic_anchors.train.checkpoint import load_checkpoint

    metrics = train("synthlt-fcn-quick", [*TINY, "trainer.max_steps=3", "regularizer.name=sar",
                    "trainer.precision=bf16-mixed"], out_dir=tmp_path / "bf16")  # fmt: skip
    assert metrics["mIoU"] is not None
    state = load_checkpoint(tmp_path / "bf16/checkpoints/last.ckpt")["state_dict"]
    assert state["regularizer.anchors"].dtype == state["regularizer.semantic_anchors"].dtype
    assert state["regularizer.anchors"].dtype.is_floating_point
    assert str(state["regularizer.anchors"].dtype) == "torch.float32"


@pytest.mark.slow
def test_demo_prints_the_side_by_side_table(tmp_path, capsys):
    assert main(["demo", "--steps", "3", "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    for text in ("CE + SAR", "mIoU", "head_mIoU", "tail_mIoU"):
        assert text in out
    for name in ("none", "sar"):
        assert (tmp_path / "demo" / name / "metrics.json").is_file()


BAD_YAML = "name: broken\ntrainer:\n  max_steps: 5\n   val_every: 2\n"


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["--set", "trainer.max_steps=abc"], ["trainer.max_steps", "abc"]),
        (["--set", "trainer.max_steps=-5"], ["trainer.max_steps", "-5"]),
        (["--set", "trainer.val_every=0"], ["trainer.val_every", "0"]),
        (["--set", "data.batch_size=0"], ["data.batch_size", "0"]),
        (["--set", "optimizer.lr=-1"], ["optimizer.lr", "-1"]),
        (["--set", "trainer.max_stepz=3"], ["trainer.max_stepz", "max_steps"]),
        (["--set", "regularizer.name=sar", "regularizer.lamda=1"], ["lamda"]),
        (["--set", "model.name=fcn_smol"], ["fcn_smol", "fcn_small"]),
        (["--set", "trainer.max_steps"], ["trainer.max_steps", "key.sub=value"]),
    ],
)  # fmt: skip
def test_bad_cli_input_is_one_line_status_2_and_leaves_no_folder(argv, names, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "synthlt-fcn-quick", "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("semantic-anchors train: error: ")
    for name in names:
        assert name in err, (name, err)
    assert not out.exists()


def test_malformed_yaml_names_file_line_and_column(tmp_path, capsys):
    recipe = tmp_path / "broken.yaml"
    recipe.write_text(BAD_YAML)
    assert main(["train", str(recipe), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{recipe}:4:" in err, err
    assert not (tmp_path / "run").exists()


def test_recipes_are_listed_and_printable(capsys):
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    for name in ("synthlt-fcn-quick", "cityscapes-fcn-r101", "quick", "compare"):
        assert f"  {name} " in out
    assert main(["train", "--print-config", "synthlt-fcn-quick", "--set", "seed=3"]) == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["seed"] == 3 and config["model"]["name"] == "fcn_small"
    assert config["trainer"]["max_steps"] == 1500


def test_train_says_where_the_run_is_and_how_to_go_on(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "synthlt-fcn-quick", "--out", str(out), "--set", *TINY,
                 "trainer.max_steps=2", "trainer.stop_at_step=1"]) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert f"run folder: {out}" in text
    assert f"paused at step 1; continue with: semantic-anchors train --resume {out}" in text
    assert main(["train", "--resume", str(out)]) == 0
    captured = capsys.readouterr()
    assert f"semantic-anchors eval {out}" in captured.out
    assert "Checkpoint directory" not in captured.out + captured.err
