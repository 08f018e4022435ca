"""Argument checks shared by the public entry points.

Every check raises with a message that names the argument, what was expected and what came
(DESIGN §6). Checks that need a device sync (finiteness, label range) are only called when the
caller's ``validate`` flag is on.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"Tensor(shape={tuple(value.shape)}, dtype={value.dtype})"
    return repr(value)


def check_int(name: str, value: Any, *, minimum: int | None = None) -> int:
    """Return ``value`` as an int, or raise if it is not an integer ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"`{name}` must be an int, got {_describe(value)}")
    if minimum is not None and value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}, got {value}")
    return value


def check_float_in(
    name: str,
    value: Any,
    low: float,
    high: float,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` as a float inside the interval, or raise naming the interval."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"`{name}` must be a float, got {_describe(value)}")
    value = float(value)
    interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if math.isnan(value) or too_low or too_high:
        raise ValueError(f"`{name}` must lie in {interval}, got {value}")
    return value


def check_non_negative(name: str, value: Any) -> float:
    """Return ``value`` as a finite float ``>= 0`` or raise."""
    return check_float_in(name, value, 0.0, math.inf, high_open=True)


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices`` or raise listing them."""
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}, got {value!r}")
    return value


def check_tensor(name: str, value: Any) -> torch.Tensor:
    """Raise TypeError unless ``value`` is a tensor."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, got {_describe(value)}")
    return value


def check_callable(name: str, value: Any) -> Callable[..., Any]:
    """Raise TypeError unless ``value`` is callable."""
    if not callable(value):
        raise TypeError(
            f"`{name}` must be callable (an nn.Module or function), got {_describe(value)}"
        )
    return value


def check_finite(name: str, tensor: torch.Tensor) -> None:
    """Raise if ``tensor`` holds NaN or inf (forces a device sync)."""
    if not bool(torch.isfinite(tensor).all()):
        bad = int((~torch.isfinite(tensor)).sum())
        raise ValueError(f"`{name}` must be finite, got {bad} non-finite value(s) (NaN or inf)")


def check_ignore_index(
    ignore_index: Any, num_classes: int, *, name: str = "ignore_index"
) -> int | None:
    """Return ``ignore_index`` (an int or None), or raise if it is a valid class index.

    A value in ``[0, num_classes)`` would silently drop every pixel of that class (e.g. the
    default 255 with 1000 classes), so it is refused; negative values (``-1``, ``-100``), values
    ``>= num_classes`` and ``None`` (nothing ignored) are accepted.

    Raises:
        TypeError: ``ignore_index`` is neither an int nor None.
        ValueError: ``0 <= ignore_index < num_classes``.
    """
    if ignore_index is None:
        return None
    check_int(name, ignore_index)
    if 0 <= ignore_index < num_classes:
        raise ValueError(
            f"`{name}` must not be a valid class index in [0, {num_classes - 1}] "
            f"(num_classes={num_classes}): got {ignore_index}, which would silently ignore class "
            f"{ignore_index}; pass an ignore_index outside that range (e.g. -1, or the ignored "
            "label of your dataset) or None for no ignored label"
        )
    return ignore_index


def check_nonempty(name: str, tensor: torch.Tensor, form: str) -> None:
    """Raise if ``tensor`` has a dimension of size 0 (an empty batch or a 0-sized map)."""
    if tensor.numel() == 0:
        raise ValueError(
            f"`{name}` must be {form} with every size >= 1 (no empty batch, no 0-sized spatial "
            f"dimension), got shape {tuple(tensor.shape)}"
        )


def check_labels(
    name: str, labels: torch.Tensor, num_classes: int, ignore_index: int | None, *, validate: bool
) -> None:
    """Check that ``labels`` are integers in ``[0, num_classes)`` or equal to ``ignore_index``.

    The dtype check is free; the range check syncs the device and only runs when ``validate``.
    """
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(
            f"`{name}` must hold integer class indices (e.g. torch.long), got dtype {labels.dtype}"
        )
    if not validate or labels.numel() == 0:
        return
    bad = (labels < 0) | (labels >= num_classes)
    if ignore_index is not None:
        bad &= labels != ignore_index
    if bool(bad.any()):
        offending = torch.unique(labels[bad])[:10].tolist()
        allowed = f"[0, {num_classes - 1}]" + (
            f" or {ignore_index}" if ignore_index is not None else ""
        )
        raise ValueError(f"`{name}` must be in {allowed}, got values {offending}")
