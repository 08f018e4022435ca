"""Tiny training settings shared by the tests that train, and the check that two runs are one."""

from __future__ import annotations

from pathlib import Path

import torch

TINY = [
    "data.options={num_images: 48}",
    "data.val_options={num_images: 20}",
    "data.batch_size=8",
    "data.val_batch_size=8",
    "data.num_workers=0",
    "trainer.progress_bar=false",
    "trainer.log_every=1",
]

SAR_EARLY_GATE = ["regularizer.name=sar", "regularizer.delta=0.2"]  # the gate opens within steps
EXACT = [*TINY, *SAR_EARLY_GATE, "trainer.deterministic=true", "optimizer.lr=0.05"]


def assert_same_run(a_dir: Path, b_dir: Path) -> None:
    """The last checkpoints of two run folders hold the same weights, SAR state, optimizer,
    schedule and validation metrics, bit for bit (and SAR's gate had opened)."""
    from semantic_anchors.train.checkpoint import load_checkpoint  # (importing TINY stays light)

    a = load_checkpoint(a_dir / "checkpoints/last.ckpt")
    b = load_checkpoint(b_dir / "checkpoints/last.ckpt")
    assert a["global_step"] == b["global_step"]
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    assert a["state_dict"]["regularizer.initialized"].all()  # the gate opened: EMA state compared
    opt_a, opt_b = a["optimizer_states"][0]["state"], b["optimizer_states"][0]["state"]
    assert opt_a.keys() == opt_b.keys()
    for key, state in opt_a.items():
        for name, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(opt_b[key][name])), name
    assert a["lr_schedulers"] == b["lr_schedulers"]
    assert a["semantic_anchors"]["last_val"] == b["semantic_anchors"]["last_val"]
