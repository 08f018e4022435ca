"""What may be resumed and how: the config a resume continues with, and refusals that say why."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from semantic_anchors.train.checkpoint import describe_skipped, newest_readable
from semantic_anchors.train.config import load_config
from semantic_anchors.train.runfolder import config_changes, ensure_not_busy, folder_state

__all__ = ["refuse_existing", "remove_partial_files", "resume_config", "set_aside_damaged"]

_INCOMPATIBLE = (
    ("model",), ("regularizer", "name"), ("data", "name"), ("loss", "name"),
    ("finetune", "calibration"),
)  # fmt: skip


def _get(config: dict, path: tuple[str, ...]) -> Any:
    for key in path:
        config = config[key]
    return config


def _check_compatible(saved: dict, new: dict, path: Path) -> None:
    for key in _INCOMPATIBLE:
        if _get(saved, key) != _get(new, key):
            raise ValueError(
                f"cannot resume {path}: {'.'.join(key)} was {_get(saved, key)!r} in the checkpoint "
                f"but is {_get(new, key)!r} now; start a new run instead"
            )


def resume_config(
    out_dir: Path, overrides: list[str], allow_change: bool, rank_zero: bool
) -> tuple[dict, Path | None, int, list[dict]]:
    """The config to continue ``out_dir`` with, its checkpoint (``None``: restart from step 0),
    the step it continues from, and the changes made on this resume."""
    if rank_zero:
        ensure_not_busy(out_dir)
    state = folder_state(out_dir)
    if state == "new":
        raise FileNotFoundError(f"cannot resume {out_dir}: no config.yaml (not a run folder?)")
    ckpt_path: Path | None = None
    if state == "started":  # killed before its first checkpoint: restart it, keeping its logs
        saved, ckpt_path, step = load_config(out_dir / "config.yaml"), None, 0
    else:  # the newest checkpoint that loads (a damaged newer one is named and skipped)
        ckpt_path, ckpt, skipped = newest_readable(out_dir / "checkpoints")
        if skipped and rank_zero:
            print(f"resume {out_dir}: {describe_skipped(skipped, ckpt_path)}", file=sys.stderr)
        if "converted_from" in ckpt["semantic_anchors"]:
            raise ValueError(
                f"cannot resume {out_dir}: it was converted from an official checkpoint "
                f"({ckpt['semantic_anchors']['converted_from']}) and holds no optimizer state; "
                "evaluate it with `semantic-anchors eval` or export it"
            )
        saved, step = load_config(ckpt["semantic_anchors"]["config"]), int(ckpt["global_step"])
    saved["trainer"]["stop_at_step"] = None  # a pause is not part of the run
    config = load_config(saved, overrides)
    if ckpt_path is not None:
        _check_compatible(saved, config, ckpt_path)
    max_steps = int(config["trainer"]["max_steps"])
    if max_steps < step or (max_steps == step and state == "finished"):
        raise ValueError(
            f"cannot resume {out_dir}: trainer.max_steps={max_steps} but the run is already at "
            f"step {step}; pass a larger trainer.max_steps to train on"
        )
    stop = config["trainer"]["stop_at_step"]
    if stop is not None and stop <= step:
        raise ValueError(
            f"cannot resume {out_dir}: trainer.stop_at_step={stop} is not after the current "
            f"step {step}"
        )
    changes = [c for c in config_changes(saved, config) if c["key"] != "trainer.stop_at_step"]
    refused = [c for c in changes if c["kind"] == "trajectory"]
    if refused and not allow_change:
        listed = "; ".join(f"{c['key']}: {c['old']!r} -> {c['new']!r}" for c in refused)
        raise ValueError(
            f"cannot resume {out_dir}: these changes alter the training trajectory: {listed}. "
            "Pass --allow-change to make them from this step on (recorded in changes.yaml), "
            "or start a new run"
        )
    return config, ckpt_path, step, changes if rank_zero else []


def refuse_existing(out_dir: Path) -> None:
    ensure_not_busy(out_dir)
    state = folder_state(out_dir)
    if state in ("finished", "interrupted"):
        raise FileExistsError(
            f"{out_dir} already holds a run ({state}); continue it with "
            f"`semantic-anchors train --resume {out_dir}` or choose another --out"
        )
    if state == "started":
        raise FileExistsError(
            f"{out_dir} holds a run that started but saved no checkpoint (killed early?); "
            f"`semantic-anchors train --resume {out_dir}` restarts it from step 0 keeping its "
            "logs, or choose another --out"
        )


def remove_partial_files(folder: Path) -> None:
    """Temporary files of a save that a killed process never finished."""
    if folder.is_dir():
        for tmp in folder.glob(".*.ckpt.*"):
            tmp.unlink(missing_ok=True)


def set_aside_damaged(folder: Path, used: Path | None) -> list[Path]:
    """Rename the rotated checkpoints newer than ``used`` (the ones a resume skipped as damaged)
    to ``NAME.damaged``, so the next rotation does not keep them in place of good ones."""
    from semantic_anchors.train.checkpoint import CHECKSUM_SUFFIX, checkpoint_candidates

    if used is None:
        return []
    moved = []
    for path in checkpoint_candidates(folder):
        if path == used:
            break
        target = path.with_name(path.name + ".damaged")
        path.replace(target)
        path.with_name(path.name + CHECKSUM_SUFFIX).unlink(missing_ok=True)
        moved.append(target)
    return moved
