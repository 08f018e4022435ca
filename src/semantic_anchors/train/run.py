"""Train, resume and evaluate runs; a run folder holds everything about one experiment."""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from semantic_anchors.train.checkpoint import AtomicCheckpointIO, load_checkpoint
from semantic_anchors.train.config import dump_config, load_config
from semantic_anchors.train.data import AnchorDataModule
from semantic_anchors.train.module import AnchorModule

__all__ = ["evaluate", "train"]

# Keys whose change makes a checkpoint unusable for resuming.
_INCOMPATIBLE = (("model",), ("regularizer", "name"), ("data", "name"), ("loss", "name"))


def _get(config: dict, path: tuple[str, ...]) -> Any:
    for key in path:
        config = config[key]
    return config


def _quiet_lightning() -> None:
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*tensorboardX.*")


class _StopAtStep(L.Callback):
    """Ends ``fit`` after ``step`` optimizer steps, as an interruption would (resumable)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step >= self.step:
            trainer.should_stop = True


def _loggers(out_dir: Path, version: str) -> list:
    from lightning.pytorch.loggers import CSVLogger

    loggers: list = [CSVLogger(out_dir, name="logs", version=version)]
    try:
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(
            TensorBoardLogger(out_dir, name="logs", version=version, default_hp_metric=False)
        )
    except ModuleNotFoundError:  # tensorboard is an optional extra
        pass
    return loggers


def _progress_bar(enabled: bool, max_steps: int) -> list:
    if not enabled:
        return []
    try:
        from lightning.pytorch.callbacks import RichProgressBar

        class StepProgressBar(RichProgressBar):
            """Step-based training: show steps, not Lightning's (meaningless) epoch counter."""

            def _get_train_description(self, current_epoch: int) -> str:
                return f"train ({max_steps} steps)"

            def get_metrics(self, trainer, pl_module) -> dict:
                items = super().get_metrics(trainer, pl_module)
                items.pop("v_num", None)
                return items

        return [StepProgressBar(leave=True)]
    except (ImportError, ModuleNotFoundError):  # rich is optional
        from lightning.pytorch.callbacks import TQDMProgressBar

        return [TQDMProgressBar()]


def _trainer(
    config: dict,
    out_dir: Path | None,
    task: str,
    *,
    fit: bool,
    log_version: str = "train",
    callbacks: list | None = None,
) -> L.Trainer:
    tcfg = config["trainer"]
    strategy = tcfg["strategy"]
    sync_bn = tcfg["sync_batchnorm"]
    on_cpu = tcfg["accelerator"] == "cpu" or (
        tcfg["accelerator"] == "auto" and not torch.cuda.is_available()
    )
    distributed = tcfg["devices"] not in (1, "1") or tcfg["num_nodes"] > 1
    if sync_bn is None:  # SyncBN for segmentation under DDP, where torch supports it (not CPU)
        sync_bn = task == "segmentation" and distributed and not on_cpu
    elif sync_bn and on_cpu:
        raise ValueError(
            "trainer.sync_batchnorm=true needs GPUs (torch's SyncBatchNorm does not run on CPU); "
            "set trainer.sync_batchnorm=false or trainer.accelerator=gpu"
        )
    callbacks = [
        *_progress_bar(bool(tcfg["progress_bar"]), int(tcfg["max_steps"])),
        *(callbacks or []),
    ]
    if fit and out_dir is not None:
        callbacks.append(ModelCheckpoint(
            dirpath=out_dir / "checkpoints", filename="best", monitor=None, save_last=True,
            every_n_train_steps=0, save_on_train_epoch_end=False, enable_version_counter=False,
        ))  # fmt: skip
        if tcfg["stop_at_step"] is not None:
            callbacks.append(_StopAtStep(int(tcfg["stop_at_step"])))
    return L.Trainer(
        accelerator=tcfg["accelerator"],
        devices=tcfg["devices"],
        num_nodes=tcfg["num_nodes"],
        strategy=strategy,
        precision=tcfg["precision"],
        sync_batchnorm=bool(sync_bn),
        deterministic=bool(tcfg["deterministic"]),
        max_steps=int(tcfg["max_steps"]),
        max_epochs=-1,
        val_check_interval=min(int(tcfg["val_every"]), int(tcfg["max_steps"])),
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        limit_val_batches=tcfg["limit_val_batches"],
        log_every_n_steps=max(1, int(tcfg["log_every"])),
        gradient_clip_val=tcfg["gradient_clip_val"],
        use_distributed_sampler=False,
        logger=_loggers(out_dir, log_version) if (fit and out_dir is not None) else False,
        callbacks=callbacks,
        enable_checkpointing=fit and out_dir is not None,
        enable_progress_bar=bool(tcfg["progress_bar"]),
        enable_model_summary=False,
        plugins=[AtomicCheckpointIO()],
        default_root_dir=str(out_dir) if out_dir is not None else None,
    )


def _data_info(dm: AnchorDataModule) -> dict:
    return {
        "task": dm.task, "num_classes": dm.num_classes, "in_channels": dm.in_channels,
        "class_names": dm.class_names, "groups": dm.groups,
        "class_frequencies": dm.class_frequencies, "ignore_index": dm.ignore_index,
    }  # fmt: skip


def _write_metrics(out_dir: Path, module: AnchorModule, extra: dict) -> dict:
    metrics = {
        **(module.last_val or {}),
        "class_names": module.data_info["class_names"],
        "groups": module.data_info["groups"],
        "class_frequencies": module.data_info["class_frequencies"],
        **extra,
    }
    tmp = out_dir / ".metrics.json.tmp"
    tmp.write_text(json.dumps(metrics, indent=2))
    os.replace(tmp, out_dir / "metrics.json")
    return metrics


def _check_compatible(saved: dict, new: dict, path: Path) -> None:
    for key in _INCOMPATIBLE:
        if _get(saved, key) != _get(new, key):
            raise ValueError(
                f"cannot resume {path}: {'.'.join(key)} was {_get(saved, key)!r} in the checkpoint "
                f"but is {_get(new, key)!r} now; start a new run instead"
            )


def train(
    recipe: str | Path | dict | None = None,
    overrides: list[str] | None = None,
    out_dir: str | Path | None = None,
    resume: str | Path | None = None,
    callbacks: list | None = None,
) -> dict:
    """Train (or resume) a run and return its final validation metrics (also ``metrics.json``).

    Args:
        recipe: a recipe name, YAML path or config dict (ignored when resuming).
        overrides: ``key.sub=value`` strings.
        out_dir: the run folder (default ``runs/<name>-<time>``).
        resume: a run folder to continue from ``checkpoints/last.ckpt`` (``overrides`` may raise
            ``trainer.max_steps``).
        callbacks: extra Lightning callbacks.

    Raises:
        FileNotFoundError: a missing recipe, data root or checkpoint.
        FileExistsError: ``out_dir`` already holds a run (it is never overwritten).
        ValueError: unknown config keys, or a checkpoint that does not fit the config.
    """
    _quiet_lightning()
    ckpt_path, log_version = None, "train"
    if resume is not None:
        out_dir = Path(resume)
        config_file = out_dir / "config.yaml"
        if not config_file.is_file():
            raise FileNotFoundError(f"cannot resume {out_dir}: no config.yaml (not a run folder?)")
        config = load_config(config_file, overrides)
        ckpt_path = out_dir / "checkpoints" / "last.ckpt"
        saved_ckpt = load_checkpoint(ckpt_path)
        _check_compatible(saved_ckpt["semantic_anchors"]["config"], config, ckpt_path)
        # A new log folder per resume: earlier logs are never overwritten.
        log_version = f"resumed-from-step-{int(saved_ckpt.get('global_step', 0))}"
    else:
        config = load_config(recipe, overrides)
        if out_dir is None:
            out_dir = Path("runs") / f"{config['name']}-{time.strftime('%Y%m%d-%H%M%S')}"
        out_dir = Path(out_dir)
        if (out_dir / "checkpoints" / "last.ckpt").exists():
            raise FileExistsError(
                f"{out_dir} already holds a run (checkpoints/last.ckpt); continue it with "
                f"`semantic-anchors train --resume {out_dir}` or choose another --out"
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(int(config["seed"]), workers=True, verbose=False)
    if config["trainer"]["deterministic"]:
        torch.use_deterministic_algorithms(True, warn_only=False)
    dm = AnchorDataModule(config["data"], int(config["seed"]))
    module = AnchorModule(config, _data_info(dm))
    trainer = _trainer(
        config, out_dir, dm.task, fit=True, log_version=log_version, callbacks=callbacks
    )
    if trainer.is_global_zero:
        dump_config(config, out_dir / "config.yaml")
    start = time.perf_counter()
    trainer.fit(module, datamodule=dm, ckpt_path=str(ckpt_path) if ckpt_path else None)
    elapsed = time.perf_counter() - start
    if module.last_val is None or module.last_val["step"] != trainer.global_step:
        trainer.validate(module, datamodule=dm, verbose=False)
        trainer.save_checkpoint(out_dir / "checkpoints" / "last.ckpt")
    if not trainer.is_global_zero:
        return dict(module.last_val or {})
    extra = {
        "train_seconds": elapsed,
        "steps": trainer.global_step,
        "world_size": trainer.world_size,
    }
    if module.rank_checksums is not None:
        extra["rank_checksums"] = module.rank_checksums
    return _write_metrics(out_dir, module, extra)


def evaluate(path: str | Path, overrides: list[str] | None = None) -> dict:
    """Re-evaluate a run folder (its ``last.ckpt``) or a checkpoint file on its validation split.

    Overrides may change evaluation settings (``eval.mode=slide``, ``data.val_split=test``, ...).
    Evaluation runs in one process unless ``trainer.devices`` / ``trainer.strategy`` are set.
    """
    _quiet_lightning()
    path = Path(path)
    ckpt_file = path / "checkpoints" / "last.ckpt" if path.is_dir() else path
    ckpt = load_checkpoint(ckpt_file)
    # One process by default (a DDP run is re-evaluated on one device); --set can change it.
    single = ["trainer.devices=1", "trainer.strategy=auto", "trainer.num_nodes=1"]
    config = load_config(ckpt["semantic_anchors"]["config"], [*single, *(overrides or [])])
    config["trainer"]["progress_bar"] = bool(config["trainer"]["progress_bar"])
    dm = AnchorDataModule(config["data"], int(config["seed"]))
    module = AnchorModule(config, _data_info(dm))
    state = ckpt["state_dict"]
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{ckpt_file} does not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    trainer = _trainer(config, None, dm.task, fit=False)
    trainer.validate(module, datamodule=dm, verbose=False)
    result = dict(module.last_val or {})
    result["step"] = int(ckpt.get("global_step", result.get("step", 0)))
    return result
