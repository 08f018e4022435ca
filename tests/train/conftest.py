"""Fixtures of the training tests: one tiny finished run, read (never written) by several tests."""

from __future__ import annotations

import contextlib
import io

import pytest

from tests._helpers.runs import TINY


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A finished 2-step synthlt-fcn-quick run folder (segmentation, 13 classes, 64x64 images)."""
    from semantic_anchors.train import train

    run = tmp_path_factory.mktemp("tiny-run") / "run"
    with contextlib.redirect_stdout(io.StringIO()):
        train("synthlt-fcn-quick", [*TINY, "trainer.max_steps=2", "trainer.val_every=2"],
              out_dir=run)  # fmt: skip
    return run
