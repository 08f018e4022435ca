"""Experiment configuration: typed sections, safe YAML, ``--set key=value`` overrides.

A config is a nested dict with fixed sections. Sections with a fixed schema (``data``, ``optimizer``,
``trainer``, ``eval``) reject unknown keys with the list of valid ones; the open sections
(``model``, ``regularizer``, ``loss``, ``data.options``) hold a ``name`` plus the keyword arguments
of the thing they build, which are checked against its signature when it is built.
"""

from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

__all__ = ["DEFAULTS", "RECIPES_DIR", "apply_overrides", "load_config", "resolve_recipe"]

RECIPES_DIR = Path(__file__).resolve().parents[3] / "recipes"


@dataclass
class DataConfig:
    name: str = "synthlt"
    root: str | None = None
    options: dict = field(default_factory=dict)  # build_dataset(name, root, split, **options)
    train_options: dict = field(default_factory=dict)  # extra options for the train split only
    val_options: dict = field(default_factory=dict)  # extra options for the val split only
    val_split: str = "val"
    batch_size: int = 16
    val_batch_size: int = 16
    num_workers: int = 2
    crop_size: int | list[int] | None = None  # segmentation train crop; None = image size
    transforms: dict = field(default_factory=dict)  # build_transforms(task, split, **transforms)


@dataclass
class OptimizerConfig:
    name: str = "sgd"  # sgd | adamw
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    poly_power: float = 0.9
    min_lr: float = 1e-4  # as mmseg's poly schedule
    warmup_steps: int = 0
    head_lr_mult: float = 1.0  # learning-rate multiplier for the head (mmseg uses 10 with AdamW)


@dataclass
class TrainerConfig:
    max_steps: int = 1000
    stop_at_step: int | None = None  # end this invocation early (resumable), schedule unchanged
    val_every: int = 500  # steps between validations (and checkpoints)
    accelerator: str = "auto"
    devices: int | str = 1
    strategy: str = "auto"
    num_nodes: int = 1
    precision: str = "32-true"
    sync_batchnorm: bool | None = None  # None: on for segmentation under DDP
    deterministic: bool = False
    log_every: int = 10
    progress_bar: bool = True
    limit_val_batches: int | float = 1.0
    gradient_clip_val: float | None = None


@dataclass
class EvalConfig:
    mode: str = "whole"  # whole | slide
    crop_size: int | list[int] | None = None
    stride: int | list[int] | None = None


SECTIONS = {
    "data": DataConfig,
    "optimizer": OptimizerConfig,
    "trainer": TrainerConfig,
    "eval": EvalConfig,
}
OPEN_SECTIONS = {
    "model": {"name": "fcn_small"},
    "regularizer": {"name": "none"},
    "loss": {"name": "ce"},
}
TOP_LEVEL = ("seed", "name", "description", *SECTIONS, *OPEN_SECTIONS)


def _defaults() -> dict[str, Any]:
    out: dict[str, Any] = {"seed": 0, "name": "run", "description": ""}
    for key, cls in SECTIONS.items():
        out[key] = {f.name: copy.deepcopy(getattr(cls(), f.name)) for f in fields(cls)}
    for key, value in OPEN_SECTIONS.items():
        out[key] = dict(value)
    return out


DEFAULTS = _defaults()


def _unknown(key: str, valid: list[str], where: str) -> ValueError:
    close = difflib.get_close_matches(key, valid, n=3)
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    return ValueError(f"unknown config key {where + key!r}{hint}; valid keys: {sorted(valid)}")


def _merge(base: dict, update: dict, where: str = "") -> dict:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if where == "" and key not in TOP_LEVEL:
            raise _unknown(key, list(TOP_LEVEL), "")
        section = where.rstrip(".")
        if section in SECTIONS and key not in out:
            raise _unknown(key, list(out), where)
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "options":
            out[key] = _merge(out[key], value, f"{where}{key}.")
        else:
            out[key] = copy.deepcopy(value)
    return out


def resolve_recipe(recipe: str | Path) -> Path:
    """A recipe name from ``recipes/`` (with or without ``.yaml``) or a YAML path."""
    path = Path(recipe)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return path
    candidate = RECIPES_DIR / f"{Path(recipe).stem}.yaml"
    if candidate.exists():
        return candidate
    names = sorted(p.stem for p in RECIPES_DIR.glob("[!_]*.yaml")) if RECIPES_DIR.exists() else []
    close = difflib.get_close_matches(str(recipe), names, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise FileNotFoundError(
        f"recipe {str(recipe)!r} is neither a YAML file nor a name in {RECIPES_DIR}.{hint} "
        f"Available: {names}"
    )


def _read_yaml(path: Path) -> dict:
    with open(path) as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config must be a YAML mapping, got {type(data).__name__}")
    return data


def load_config(
    recipe: str | Path | dict | None = None, overrides: list[str] | None = None
) -> dict:
    """Defaults, then the recipe (which may name a ``base:`` recipe), then ``--set`` overrides.

    Raises:
        ValueError: an unknown key (the message lists the valid ones) or a malformed override.
        FileNotFoundError: the recipe does not exist.
    """
    config = DEFAULTS
    if isinstance(recipe, dict):
        config = _merge(config, recipe)
    elif recipe is not None:
        path = resolve_recipe(recipe)
        data = _read_yaml(path)
        base = data.pop("base", None)  # a recipe may extend another one
        if base is not None:
            local = path.parent / f"{base}.yaml"
            config = load_config(local if local.exists() else base)
        config = _merge(config, data)
    return apply_overrides(config, overrides or [])


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(config: dict, overrides: list[str]) -> dict:
    """Apply ``key.sub=value`` strings (values parsed as YAML: ``0.1``, ``true``, ``[1, 2]``)."""
    update: dict = {}
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ValueError(f"override {item!r} has an empty key part")
        node = update
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = _parse_value(raw)
    return _merge(config, update)


def dump_config(config: dict, path: Path) -> None:
    """Write the fully resolved config as YAML."""
    path.write_text(yaml.safe_dump(config, sort_keys=False))
