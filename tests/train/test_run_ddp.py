"""DDP on CPU with two gloo processes, through the command line as a user runs it."""

import json
import subprocess
import sys

import pytest

from semantic_anchors.train import evaluate
from tests._helpers.runs import TINY


@pytest.mark.slow
def test_two_process_ddp_agrees_with_single_process_eval(tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "semantic_anchors.cli", "train", "synthlt-fcn-quick",
           "--out", str(out), "--set", *TINY, "data.val_options={num_images: 21}",
           "trainer.max_steps=6", "trainer.val_every=6", "trainer.devices=2",
           "trainer.strategy=ddp", "trainer.accelerator=cpu", "regularizer.name=sar",
           "regularizer.delta=0.05"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    # Parameters and buffers (SAR's anchors, semantic anchors and gate state included) agree.
    first, second = metrics["rank_checksums"]
    assert first == second and len(first) > 50
    # The synced validation (21 images split 11 / 10 across ranks) equals one process.
    single = evaluate(out)
    assert single["mIoU"] == pytest.approx(metrics["mIoU"], abs=1e-9)
    assert single["IoU"] == pytest.approx(metrics["IoU"], abs=1e-9, nan_ok=True)
