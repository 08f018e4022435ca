"""Data loading whose order and augmentation are a pure function of ``(seed, step)``.

That is what makes a resumed run identical to a straight one: the training batch of step ``k`` on
rank ``r`` is computed from the seed, ``k`` and ``r`` alone, and every sample's augmentation is
seeded from its position in the stream, not from a worker's history. The batch samplers are in
:mod:`semantic_anchors.train.sampling` (``StepBatchSampler`` and ``ShardSampler`` are re-exported
here).
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.seed import pl_worker_init_function
from torch.utils.data import DataLoader, Dataset

from semantic_anchors.data import build_dataset, build_transforms
from semantic_anchors.train.sampling import (
    ClassBalancedBatchSampler,
    ShardSampler,
    StepBatchSampler,
)

__all__ = ["AnchorDataModule", "SeededDataset", "ShardSampler", "StepBatchSampler"]


class SeededDataset(Dataset):
    """Applies ``transform`` with the RNGs seeded per sample (``(index, seed)`` items).

    Plain integer indices are served with the transform as it is (evaluation).
    """

    def __init__(self, dataset: Any, transform: Callable | None) -> None:
        self.dataset, self.transform = dataset, transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: int | tuple[int, int]):
        if isinstance(item, tuple):
            index, seed = item
            with torch.random.fork_rng(devices=[]):
                # The project's transforms re-seed their python / albumentations generators from
                # torch.initial_seed(), so this makes the augmentation a function of `seed`.
                # (The default generator alone: ~1 us, where torch.manual_seed costs ~120 us.)
                torch.default_generator.manual_seed(seed)
                image, target = self.dataset[index]
                return self.transform(image, target) if self.transform else (image, target)
        image, target = self.dataset[item]
        return self.transform(image, target) if self.transform else (image, target)


def _init_worker(worker_id: int) -> None:
    """Data workers leave signals to the main process, which saves a checkpoint and then stops
    them; a Ctrl-C (sent to the whole process group) would otherwise kill them mid-step."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    pl_worker_init_function(worker_id)


class AnchorDataModule(L.LightningDataModule):
    """Builds the datasets and loaders of a config's ``data`` section."""

    def __init__(self, data_config: dict, seed: int) -> None:
        super().__init__()
        self.cfg, self.seed = data_config, seed
        self.train_set = self._build("train", self.cfg["train_options"])
        if self.cfg.get("holdout") is not None:  # tuning: validate on held-out training items
            from semantic_anchors.data.holdout import HoldoutSubset, holdout_indices

            full = self.train_set
            kept, held = holdout_indices(
                len(full), self.cfg["holdout"], self.cfg.get("holdout_seed", 0),
                getattr(full, "targets", None),
            )  # fmt: skip
            self.train_set = HoldoutSubset(full, kept, "train")
            self.val_set = HoldoutSubset(full, held, "holdout")
        else:
            self.val_set = self._build(self.cfg["val_split"], self.cfg["val_options"])
        info = self.train_set
        self.task, self.num_classes = info.task, info.num_classes
        self.in_channels, self.class_names = info.in_channels, list(info.class_names)
        self.groups = {k: list(v) for k, v in info.groups.items()}
        self.class_frequencies = [float(v) for v in info.class_frequencies]
        self.ignore_index = getattr(info, "ignore_index", 255)

    def info(self) -> dict:
        """What the run's parts need to know of the training set (the ``data_info`` of
        :func:`~semantic_anchors.train.parts.build_parts`)."""
        return {
            "task": self.task, "num_classes": self.num_classes, "in_channels": self.in_channels,
            "class_names": self.class_names, "groups": self.groups,
            "class_frequencies": self.class_frequencies, "ignore_index": self.ignore_index,
        }  # fmt: skip

    def _build(self, split: str, extra: dict):
        options = {**self.cfg["options"], **extra}
        if not self.cfg.get("instances"):
            return build_dataset(self.cfg["name"], root=self.cfg["root"], split=split, **options)
        from semantic_anchors.data.instances import InstanceMaps

        options["with_instances"] = True
        return InstanceMaps(
            build_dataset(self.cfg["name"], root=self.cfg["root"], split=split, **options)
        )

    def _transform(self, split: str):
        ds = self.train_set
        kwargs = {"mean": ds.mean, "std": ds.std, **self.cfg["transforms"]}
        if split == "train" and ds.task == "segmentation":
            crop = self.cfg["crop_size"]
            if crop is None:
                image, _ = ds[0]
                crop = list(image.shape[-2:])
            kwargs["crop_size"] = crop
        elif self.cfg["crop_size"] is not None and ds.task == "classification":
            kwargs["crop_size"] = self.cfg["crop_size"]
        return build_transforms(ds.task, "train" if split == "train" else "val", **kwargs)

    def _rank_world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def _loader_kwargs(self) -> dict:
        workers = int(self.cfg["num_workers"])
        return {
            "num_workers": workers,
            "worker_init_fn": _init_worker if workers > 0 else None,
            "persistent_workers": workers > 0,
            "pin_memory": torch.cuda.is_available(),
            # An own generator: creating an iterator never consumes the global RNG.
            "generator": torch.Generator().manual_seed(self.seed),
        }

    def train_dataloader(self) -> DataLoader:
        rank, world = self._rank_world()
        trainer = getattr(self, "trainer", None)
        start = (lambda: trainer.global_step) if trainer is not None else (lambda: 0)
        if self.cfg.get("sampler") == "class-balanced":  # every class equally often (MiSLAS)
            sampler = ClassBalancedBatchSampler(
                getattr(self.train_set, "targets", None), int(self.cfg["batch_size"]), self.seed,
                rank, world, start,
            )  # fmt: skip
        else:
            sampler = StepBatchSampler(
                len(self.train_set), int(self.cfg["batch_size"]), self.seed, rank, world, start
            )
        dataset = SeededDataset(self.train_set, self._transform("train"))
        return DataLoader(dataset, batch_sampler=sampler, **self._loader_kwargs())

    def val_dataloader(self) -> DataLoader:
        rank, world = self._rank_world()
        dataset = SeededDataset(self.val_set, self._transform("val"))
        return DataLoader(
            dataset,
            batch_size=int(self.cfg["val_batch_size"]),
            sampler=ShardSampler(len(self.val_set), rank, world),
            **self._loader_kwargs(),
        )
