"""Shared pieces of the two-stage (DisAlign, MiSLAS) tests: tiny Fashion-MNIST runs and modules."""

from __future__ import annotations

from pathlib import Path

import torch

from tests._helpers.writers import write_fashion

QUIET = ["data.num_workers=0", "trainer.progress_bar=false", "trainer.log_every=1"]


def fashion_root(tmp_path: Path) -> Path:
    """Fashion-MNIST IDX files written by the test (the Debian package may be absent in CI)."""
    return write_fashion(tmp_path / "fashion", train_per_class=20, test_per_class=4)


def classification_overrides(root: Path, steps: int = 2) -> list[str]:
    return [
        f"data.root={root}",
        "data.options={imbalance_factor: 10, n_max: 20}",
        "data.batch_size=8",
        "data.val_batch_size=40",
        f"trainer.max_steps={steps}",
        f"trainer.val_every={steps}",
        *QUIET,
    ]


def segmentation_overrides(root: Path, steps: int = 2) -> list[str]:
    return [
        f"data.root={root}",
        "data.options={imbalance_factor: 10, image_size: 32, num_train_images: 12, "
        "num_val_images: 4}",
        "data.crop_size=32",
        "data.batch_size=4",
        "data.val_batch_size=4",
        f"trainer.max_steps={steps}",
        f"trainer.val_every={steps}",
        *QUIET,
    ]


def data_info(task: str, num_classes: int = 4, frequencies=None) -> dict:
    """What the training module needs to know of a dataset, without one."""
    names = [f"c{i}" for i in range(num_classes)]
    return {
        "task": task, "num_classes": num_classes, "in_channels": 1, "class_names": names,
        "groups": {"head": [0], "body": list(range(1, num_classes - 1)),
                   "tail": [num_classes - 1]},
        "class_frequencies": frequencies or [float(100 // (i + 1)) for i in range(num_classes)],
        "ignore_index": 255,
    }  # fmt: skip


def build_module(overrides: list[str], task: str = "classification"):
    """An :class:`AnchorModule` from the defaults + ``overrides`` (no dataset, no trainer)."""
    from semantic_anchors.train.config import load_config
    from semantic_anchors.train.module import AnchorModule

    model = "small_cnn" if task == "classification" else "fcn_small"
    data = "fashion-lt" if task == "classification" else "fashion-scenes-lt"
    base = [f"model.name={model}", f"data.name={data}", "trainer.log_every=1000"]
    return AnchorModule(load_config(None, [*base, *overrides]), data_info(task))


def one_step(module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """One optimizer step of ``module`` as Lightning runs it (train mode, backward, step)."""
    optimizer = module.configure_optimizers()["optimizer"]
    module.train()
    loss = module.training_step((images, targets), 0)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.detach()


def snapshot(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before: dict, after: dict) -> set[str]:
    return {k for k in before if not torch.equal(before[k], after[k])}
