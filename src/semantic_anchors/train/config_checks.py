"""Config checks: the type and range of every key of a resolved config.

:func:`validate_config` checks a whole config (as :func:`~semantic_anchors.train.config.load_config`
returns it) against the schema dataclasses of :mod:`semantic_anchors.train.schema`: the type from
their annotations, then the range of each fixed key. It is fast and pure, and a bad value is a
one-line ``ValueError`` naming the dotted key, the value and what is allowed.
"""

from __future__ import annotations

import math
import re
import types
import typing
from typing import Any

from semantic_anchors.anchor_inference import ANCHOR_METRICS
from semantic_anchors.calibration import CALIBRATIONS
from semantic_anchors.train.schema import OPEN_SECTIONS, SECTIONS, TOP_LEVEL, unknown_key_error

__all__ = ["EVAL_MODES", "MAX_SEED", "OPTIMIZERS", "PRECISIONS", "validate_config"]

# What the training code accepts (train/module.py, inference.py) and what Lightning 2.x accepts as
# `precision` (lightning.fabric.connector._PRECISION_INPUT; a test keeps the two in step).
OPTIMIZERS = ("sgd", "adamw")
EVAL_MODES = ("whole", "slide")
SAMPLERS = ("class-balanced",)  # train/data.py; None is the default stream
ON_NONFINITE = ("stop", "skip")
PRECISIONS = (
    "32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true",
    "transformer-engine", "transformer-engine-float16", "32", "16", "bf16", "64", 32, 16, 64,
)  # fmt: skip
MAX_SEED = 2**32 - 1  # Lightning's seed_everything replaces a larger seed by a random one
_FOLDER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,99}")
_DEVICES = re.compile(r"auto|-1|\d+|\d+(\s*,\s*\d+)*\s*,?")  # Lightning's string forms
_TYPES = {key: typing.get_type_hints(cls) for key, cls in SECTIONS.items()}

_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
_NAMES.update({dict: "a mapping", type(None): "null"})


def _describe(tp: Any) -> str:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        names = [_describe(arg) for arg in typing.get_args(tp)]
        return ", ".join(names[:-1]) + " or " + names[-1]
    if typing.get_origin(tp) is list:
        (item,) = typing.get_args(tp)
        plural = {int: "integers", float: "numbers", str: "strings"}
        return "a list of " + plural.get(item, _describe(item))
    return _NAMES[tp]


def _matches(value: Any, tp: Any) -> bool:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(tp))
    if typing.get_origin(tp) is list:
        (item,) = typing.get_args(tp)
        return isinstance(value, list) and all(_matches(v, item) for v in value)
    if isinstance(value, bool):  # True is an int in Python, never in a config
        return tp is bool
    if tp is float:
        return isinstance(value, (int, float))
    return isinstance(value, tp)


def _check_type(key: str, value: Any, tp: Any) -> None:
    if not _matches(value, tp):
        raise ValueError(f"{key} must be {_describe(tp)}, got {value!r}")


def _check(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ValueError(f"{key} must be {allowed}, got {value!r}")


def _number(key: str, value: Any, low: float, high: float | None = None, *, low_open=False,
            high_open=False, none_ok=False) -> None:  # fmt: skip
    """``value`` within ``[low, high]`` (an end in ``*_open`` excluded; NaN and inf never)."""
    if value is None and none_ok:
        return
    ok = math.isfinite(value) and (value > low if low_open else value >= low)
    if high is None:
        allowed = f"{'>' if low_open else '>='} {low}"
    else:
        ok = ok and (value < high if high_open else value <= high)
        allowed = f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    _check(ok, key, value, allowed + (" or null" if none_ok else ""))


def _size(key: str, value: Any) -> None:
    """``None``, a positive int or ``[height, width]`` of positive ints."""
    ok = value is None or (value >= 1 if isinstance(value, int) else len(value) == 2)
    ok = ok and (not isinstance(value, list) or min(value) >= 1)
    _check(ok, key, value, "a positive integer, [height, width] of positive integers or null")


def validate_config(config: dict) -> dict:
    """Check the keys, types and ranges of a whole config; fast, pure, returns ``config`` unchanged.

    Fixed sections are checked against the dataclass annotations (``bool`` is never an integer; an
    integer is a valid float), then for ranges (``data.batch_size >= 1``, ``optimizer.lr > 0``,
    ``trainer.stop_at_step`` in ``[1, max_steps]``, ...). Open sections (``model``,
    ``regularizer``, ``loss``) must be mappings with a string ``name``; their other keys are checked
    when the thing is built.

    Raises:
        ValueError: one line naming the dotted key, the value and what is allowed.
    """
    if not isinstance(config, dict):
        raise ValueError(f"a config must be a mapping, got {config!r}")
    for key in config:
        if key not in TOP_LEVEL:
            raise unknown_key_error(key, list(TOP_LEVEL), "")
    missing = [key for key in TOP_LEVEL if key not in config]
    sections = [s for s in _TYPES if isinstance(config.get(s), dict)]
    missing += [f"{s}.{k}" for s in sections for k in _TYPES[s] if k not in config[s]]
    if missing:
        raise ValueError(f"config is missing {missing}; load_config fills in the defaults")
    _check_type("seed", config["seed"], int)
    _number("seed", config["seed"], 0, MAX_SEED)
    _check_type("name", config["name"], str)
    _check(
        _FOLDER_NAME.fullmatch(config["name"]) is not None, "name", config["name"],
        "a folder name: up to 100 letters, digits or '_.+-', not starting with '.', '+' or '-'",
    )  # fmt: skip
    _check_type("description", config["description"], str)
    for section, hints in _TYPES.items():
        values = config[section]
        _check(isinstance(values, dict), section, values, "a mapping")
        for key in values:
            if key not in hints:
                raise unknown_key_error(key, list(hints), f"{section}.")
        for key, tp in hints.items():
            _check_type(f"{section}.{key}", values[key], tp)
    for section in OPEN_SECTIONS:
        values = config[section]
        _check(isinstance(values, dict), section, values, "a mapping with a 'name'")
        name = values.get("name")
        _check(isinstance(name, str) and name != "", f"{section}.name", name, "a non-empty string")
    _check_ranges(config["data"], config["optimizer"], config["trainer"], config["eval"])
    _check_longtail(config["data"], config["finetune"])
    return config


def _check_longtail(data: dict, ft: dict) -> None:
    """``data.mixup_alpha`` / ``data.sampler`` and the ``finetune`` section (docs/longtail.md)."""
    _number("data.mixup_alpha", data["mixup_alpha"], 0, none_ok=True)
    sampler = data["sampler"]
    _check(sampler is None or sampler in SAMPLERS, "data.sampler", sampler,
           f"null or one of {SAMPLERS}")  # fmt: skip
    _check(ft["init_from"] != "", "finetune.init_from", "", "a run folder or null")
    only = ft["train_only"]
    _check(only is None or (len(only) > 0 and all(p.strip(".") for p in only)),
           "finetune.train_only", only,
           "null or a non-empty list of parameter-name prefixes (model.fc, calibration ...)",
           )  # fmt: skip
    name = ft["calibration"]
    names = tuple(CALIBRATIONS.names())  # exact names, as a config writes them
    _check(name is None or name in names, "finetune.calibration", name,
           f"null or one of {names}")  # fmt: skip
    for key in ("calibration_options", "calibration_lr_mult"):
        _check(ft[key] is None or name is not None, f"finetune.{key}", ft[key],
               "null without finetune.calibration")  # fmt: skip
    _number("finetune.calibration_lr_mult", ft["calibration_lr_mult"], 0, low_open=True,
            none_ok=True)  # fmt: skip


def _check_ranges(data: dict, opt: dict, trainer: dict, ev: dict) -> None:
    _number("data.batch_size", data["batch_size"], 1)
    _number("data.val_batch_size", data["val_batch_size"], 1)
    _number("data.num_workers", data["num_workers"], 0)
    _size("data.crop_size", data["crop_size"])
    _number("data.holdout", data["holdout"], 0, 1, low_open=True, high_open=True, none_ok=True)
    _number("data.holdout_seed", data["holdout_seed"], 0, MAX_SEED)

    name = opt["name"]
    _check(name.lower() in OPTIMIZERS, "optimizer.name", name, f"one of {OPTIMIZERS}")
    _number("optimizer.lr", opt["lr"], 0, low_open=True)
    _number("optimizer.momentum", opt["momentum"], 0, 1, high_open=True)
    _number("optimizer.weight_decay", opt["weight_decay"], 0)
    betas = opt["betas"]
    _check(
        len(betas) == 2 and all(math.isfinite(b) and 0 <= b < 1 for b in betas),
        "optimizer.betas", betas, "[beta1, beta2], each in [0, 1)",
    )  # fmt: skip
    _number("optimizer.poly_power", opt["poly_power"], 0)
    _number("optimizer.min_lr", opt["min_lr"], 0)
    _number("optimizer.head_lr_mult", opt["head_lr_mult"], 0, low_open=True)

    max_steps = trainer["max_steps"]
    _number("trainer.max_steps", max_steps, 1)
    warmup = opt["warmup_steps"]
    _check(0 <= warmup < max_steps, "optimizer.warmup_steps", warmup, f"in [0, {max_steps}) "
           f"(trainer.max_steps={max_steps})")  # fmt: skip
    stop = trainer["stop_at_step"]
    _check(stop is None or 1 <= stop <= max_steps, "trainer.stop_at_step", stop,
           f"null or in [1, {max_steps}] (trainer.max_steps={max_steps})")  # fmt: skip
    _number("trainer.val_every", trainer["val_every"], 1)
    _number("trainer.log_every", trainer["log_every"], 1)
    _number("trainer.checkpoint_every", trainer["checkpoint_every"], 1, none_ok=True)
    _number("trainer.agree_every", trainer["agree_every"], 1)
    _number("trainer.checkpoint_minutes", trainer["checkpoint_minutes"], 0, low_open=True,
            none_ok=True)  # fmt: skip
    _number("trainer.threads", trainer["threads"], 1, none_ok=True)
    _number("trainer.num_nodes", trainer["num_nodes"], 1)
    devices = trainer["devices"]
    ok = devices == -1 or devices >= 1 if isinstance(devices, int) else _DEVICES.fullmatch(devices)
    _check(bool(ok), "trainer.devices", devices,
           "a count >= 1, -1 (all), 'auto' or a list of device ids such as '0,1'")  # fmt: skip
    precision = trainer["precision"]
    allowed = ", ".join(repr(p) for p in PRECISIONS[:8])
    _check(precision in PRECISIONS, "trainer.precision", precision,
           f"one of Lightning's precisions ({allowed}, or the legacy 32, 16, 'bf16', 64)")  # fmt: skip
    limit = trainer["limit_val_batches"]
    ok = limit >= 1 if isinstance(limit, int) else math.isfinite(limit) and 0 < limit <= 1
    _check(ok, "trainer.limit_val_batches", limit,
           "a number of batches >= 1 (an integer) or a fraction in (0.0, 1.0]")  # fmt: skip
    _number("trainer.gradient_clip_val", trainer["gradient_clip_val"], 0, none_ok=True)
    _number("trainer.keep_checkpoints", trainer["keep_checkpoints"], 1)
    _check(trainer["on_nonfinite"] in ON_NONFINITE, "trainer.on_nonfinite",
           trainer["on_nonfinite"], f"one of {ON_NONFINITE}")  # fmt: skip
    _number("trainer.max_skip_fraction", trainer["max_skip_fraction"], 0, 1)

    _check(ev["mode"] in EVAL_MODES, "eval.mode", ev["mode"], f"one of {EVAL_MODES}")
    _size("eval.crop_size", ev["crop_size"])
    _size("eval.stride", ev["stride"])
    if ev["mode"] == "slide":
        for key in ("crop_size", "stride"):
            _check(ev[key] is not None, f"eval.{key}", None, "set when eval.mode is 'slide'")
    _number("eval.anchor_fusion", ev["anchor_fusion"], 0)
    _check(ev["anchor_metric"] in ANCHOR_METRICS, "eval.anchor_metric", ev["anchor_metric"],
           f"one of {ANCHOR_METRICS}")  # fmt: skip
    _number("eval.anchor_temperature", ev["anchor_temperature"], 0, low_open=True, none_ok=True)
