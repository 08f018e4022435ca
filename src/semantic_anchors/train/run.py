"""Train, resume and evaluate runs; a run folder holds everything about one experiment."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch

from semantic_anchors._provenance import record_code_version
from semantic_anchors.train.callbacks import (
    RunCheckpointer,
    TrainingInterrupted,
    TrainingPaused,
    step_progress_bar,
)
from semantic_anchors.train.checkpoint import (
    AtomicCheckpointIO,
    describe_skipped,
    load_checkpoint,
    newest_readable,
    warn_low_space,
)
from semantic_anchors.train.config import dump_config, load_config
from semantic_anchors.train.data import AnchorDataModule
from semantic_anchors.train.divergence import DIVERGED_FILE, TrainingDiverged, describe_divergence
from semantic_anchors.train.finetune import load_init_from
from semantic_anchors.train.module import AnchorModule
from semantic_anchors.train.parts import text_anchor_cache, uses_text_anchors
from semantic_anchors.train.resume import (
    refuse_existing,
    remove_partial_files,
    resume_config,
    set_aside_damaged,
)
from semantic_anchors.train.runfolder import (
    RunFolderBusy,
    RunLock,
    folder_state,
    is_global_zero_process,
    record_changes,
)

__all__ = ["RunFolderBusy", "TrainingInterrupted", "evaluate", "train"]


def _quiet_lightning() -> None:
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*tensorboardX.*")


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
        *([step_progress_bar(int(tcfg["max_steps"]))] if tcfg["progress_bar"] else []),
        *(callbacks or []),
    ]
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
        enable_checkpointing=False,  # RunCheckpointer writes the checkpoints
        enable_progress_bar=bool(tcfg["progress_bar"]),
        enable_model_summary=False,
        plugins=[AtomicCheckpointIO(keep=int(tcfg["keep_checkpoints"]))],
        default_root_dir=str(out_dir) if out_dir is not None else None,
    )


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


def _cpu_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def intra_op_threads(config: dict) -> int:
    """The main process's torch threads: ``trainer.threads``, else ``OMP_NUM_THREADS`` when set,
    else the cores left over by the data workers (at least 1), so that the main process and the
    workers do not oversubscribe the cores; the workers use one thread each (torch's default)."""
    threads = config["trainer"].get("threads")
    if threads is not None:
        return int(threads)
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    return max(1, _cpu_cores() - int(config["data"]["num_workers"]))


def _log_version(out_dir: Path, base: str) -> str:
    """A log folder name not used yet: earlier logs are never overwritten."""
    version, k = base, 1
    while (out_dir / "logs" / version).exists():
        k += 1
        version = f"{base}-{k}"
    return version


def train(
    recipe: str | Path | dict | None = None,
    overrides: list[str] | None = None,
    out_dir: str | Path | None = None,
    resume: str | Path | None = None,
    callbacks: list | None = None,
    *,
    allow_change: bool = False,
    on_start: Any = None,
) -> dict:
    """Train (or resume) a run and return its final validation metrics (also ``metrics.json``).

    The run folder is locked for the whole call (one writer), checkpoints are written at every
    validation, every ``trainer.checkpoint_every`` steps and ``trainer.checkpoint_minutes``
    minutes, and SIGINT / SIGTERM save one at the end of the current step.

    Args:
        recipe: a recipe name, YAML path or config dict (ignored when resuming).
        overrides: ``key.sub=value`` strings.
        out_dir: the run folder (default ``runs/<name>-<time>``).
        resume: a run folder to continue from ``checkpoints/last.ckpt`` (a folder that has a
            config but no checkpoint yet restarts from step 0, keeping its logs).
        callbacks: extra Lightning callbacks.
        allow_change: on resume, accept changes that alter the training trajectory (seed, lr,
            batch size, ...); each is recorded in ``changes.yaml`` with the step it took effect.
        on_start: called with the run folder once it is locked (the CLI prints it).

    Returns:
        The final validation metrics; a run paused by ``trainer.stop_at_step`` returns its last
        validation with ``paused_at_step`` (and writes no ``metrics.json``).

    Raises:
        FileNotFoundError: a missing recipe, data root or checkpoint.
        FileExistsError: ``out_dir`` already holds a run (it is never overwritten).
        RunFolderBusy: another process is writing ``out_dir``.
        TrainingInterrupted: SIGINT / SIGTERM stopped training (a checkpoint was saved).
        ValueError: a bad config, or a resume that does not fit the run.
    """
    _quiet_lightning()
    rank_zero = is_global_zero_process()
    ckpt_path, log_version, changes, step = None, "train", [], 0
    if resume is not None:
        out_dir = Path(resume)
        config, ckpt_path, step, changes = resume_config(
            out_dir, list(overrides or []), allow_change, rank_zero
        )
        log_version = f"resumed-from-step-{step}"
    else:
        config = load_config(recipe, overrides)
        if out_dir is None:
            out_dir = Path("runs") / f"{config['name']}-{time.strftime('%Y%m%d-%H%M%S')}"
        out_dir = Path(out_dir)
        if rank_zero:
            refuse_existing(out_dir)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(intra_op_threads(config))
    try:
        return _train(
            _RunStart(config, out_dir, resume is not None, ckpt_path, log_version, changes, step,
                      rank_zero, list(callbacks or []), on_start)
        )  # fmt: skip
    finally:
        torch.set_num_threads(previous_threads)


@dataclass(frozen=True)
class _RunStart:
    """Where :func:`train` starts a run: what it resolved before anything is built."""

    config: dict
    out_dir: Path
    resumed: bool
    ckpt_path: Path | None  # the checkpoint to continue from (None: step 0)
    log_version: str  # the base name of this attempt's log folder
    changes: list  # the trajectory changes accepted on resume (changes.yaml)
    step: int  # the step training continues from
    rank_zero: bool  # this process writes the run folder
    callbacks: list  # the caller's extra Lightning callbacks
    on_start: Callable[[Path], Any] | None  # called with the locked run folder


def _train(start: _RunStart) -> dict:
    config, out_dir, ckpt_path, rank_zero = (
        start.config,
        start.out_dir,
        start.ckpt_path,
        start.rank_zero,
    )
    log_version = start.log_version
    # Everything that can fail on bad input is built before the run folder is touched.
    L.seed_everything(int(config["seed"]), workers=True, verbose=False)
    if config["trainer"]["deterministic"]:
        torch.use_deterministic_algorithms(True, warn_only=False)
    dm = AnchorDataModule(config["data"], int(config["seed"]))
    text_cache, text, new_text = None, None, False
    if uses_text_anchors(config):  # a run's text anchors live in its folder (resume: the same)
        text_cache = text_anchor_cache(config, dm.info(), out_dir / "anchors")
        text = text_cache.load()
        new_text = text is None
        if new_text:  # written below, once the run folder is locked
            text = text_cache.compute()
    module = AnchorModule(config, dm.info(), anchors=text)
    init_from = (config.get("finetune") or {}).get("init_from")
    if init_from is not None and ckpt_path is None:  # stage 2 starts from a run's whole model
        load_init_from(module, init_from)
    tcfg = config["trainer"]
    checkpointer = RunCheckpointer(
        out_dir / "checkpoints", val_every=int(tcfg["val_every"]),
        every_steps=tcfg.get("checkpoint_every"), every_minutes=tcfg.get("checkpoint_minutes"),
        agree_every=int(tcfg["agree_every"]),
        stop_at_step=tcfg["stop_at_step"], monitor=module.monitor if tcfg.get("save_best") else None,
    )  # fmt: skip
    existed = out_dir.exists()
    lock = RunLock(out_dir)
    if rank_zero:
        lock.acquire()
    try:
        if rank_zero:
            if not start.resumed and folder_state(out_dir) != "new":  # raced with another command
                refuse_existing(out_dir)
            remove_partial_files(out_dir / "checkpoints")
            for moved in set_aside_damaged(out_dir / "checkpoints", ckpt_path):
                print(f"set aside the damaged {moved}", file=sys.stderr)
            (out_dir / DIVERGED_FILE).unlink(missing_ok=True)  # resumed: no longer diverged
            warn_low_space(out_dir, module, int(tcfg["keep_checkpoints"]))
            log_version = _log_version(out_dir, log_version)
        trainer = _trainer(
            config, out_dir, dm.task, fit=True, log_version=log_version,
            callbacks=[checkpointer, *start.callbacks],
        )  # fmt: skip
        if rank_zero:
            if new_text:
                text_cache.save(text)
            if not start.resumed:
                dump_config(config, out_dir / "config.yaml")
            record_changes(out_dir, start.step, start.changes)
            record_code_version(out_dir, start.step)  # which code trained from this step on
        if start.on_start is not None and rank_zero:
            start.on_start(out_dir)
        checkpointer.saved_step = start.step if ckpt_path is not None else None
        try:
            return _fit(trainer, module, dm, out_dir, ckpt_path, checkpointer)
        except TrainingDiverged as err:
            describe_divergence(err, out_dir, config, checkpointer, rank_zero)
            raise
    except BaseException:
        if rank_zero and not existed and not (out_dir / "config.yaml").exists():
            shutil.rmtree(out_dir, ignore_errors=True)  # nothing of a run was made: leave nothing
        raise
    finally:
        lock.release()


def _fit(trainer, module, dm, out_dir: Path, ckpt_path, checkpointer: RunCheckpointer) -> dict:
    start = time.perf_counter()
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=str(ckpt_path) if ckpt_path else None)
    except TrainingPaused as pause:
        return {**(module.last_val or {}), "paused_at_step": pause.step}
    elapsed = time.perf_counter() - start
    if module.last_val is None or module.last_val["step"] != trainer.global_step:
        trainer.validate(module, datamodule=dm, verbose=False)
        checkpointer._save(trainer)
    if not trainer.is_global_zero:
        return dict(module.last_val or {})
    extra = {
        "train_seconds": elapsed,
        "steps": trainer.global_step,
        "world_size": trainer.world_size,
        "checkpoint_seconds": checkpointer.save_seconds,
    }
    if module.rank_checksums is not None:
        extra["rank_checksums"] = module.rank_checksums
    if module.config["trainer"]["on_nonfinite"] == "skip":  # counted and reported
        extra["skipped_steps"] = module.skipped_steps
        extra["skipped_parts"] = module.skipped_parts
    return _write_metrics(out_dir, module, extra)


def evaluate(path: str | Path, overrides: list[str] | None = None) -> dict:
    """Re-evaluate a run folder (its ``last.ckpt``) or a checkpoint file on its validation split.

    Overrides may change evaluation settings (``eval.mode=slide``, ``data.val_split=test``, ...).
    Evaluation runs in one process unless ``trainer.devices`` / ``trainer.strategy`` are set.
    """
    _quiet_lightning()
    path = Path(path)
    if path.is_dir():  # the newest readable checkpoint (a damaged newer one is named, skipped)
        ckpt_file, ckpt, skipped = newest_readable(path / "checkpoints")
        if skipped:
            print(f"eval {path}: {describe_skipped(skipped, ckpt_file)}", file=sys.stderr)
    else:
        ckpt_file, ckpt = path, load_checkpoint(path)
    # One process by default (a DDP run is re-evaluated on one device); --set can change it.
    single = ["trainer.devices=1", "trainer.strategy=auto", "trainer.num_nodes=1"]
    config = load_config(ckpt["semantic_anchors"]["config"], [*single, *(overrides or [])])
    config["trainer"]["progress_bar"] = bool(config["trainer"]["progress_bar"])
    dm = AnchorDataModule(config["data"], int(config["seed"]))
    state = ckpt["state_dict"]
    text = state.get("regularizer.anchors") if uses_text_anchors(config) else None
    module = AnchorModule(config, dm.info(), anchors=text)
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
