import json
import subprocess
import sys

import pytest
import yaml

from semantic_anchors.cli import main
from tests.train.conftest import TINY


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
