"""Argument and input checks shared by the models (private).

Every check fails with an error that names the argument, the expected and the received value.
None of them reads tensor values, so none forces a device sync.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from torch import Tensor


def check_int(name: str, value: Any, *, minimum: int = 1) -> int:
    """Returns ``value`` if it is an ``int >= minimum``.

    Raises:
        TypeError: ``value`` is not an int (bools are refused too).
        ValueError: ``value < minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"{name}: expected an int >= {minimum}, got {value!r} ({type(value).__name__})"
        )
    if value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value}")
    return value


def check_choice(name: str, value: Any, choices: Collection[Any]) -> Any:
    """Returns ``value`` if it is one of ``choices``.

    Raises:
        ValueError: ``value`` is not one of ``choices``.
    """
    try:
        known = not isinstance(value, bool) and value in choices
    except TypeError:  # unhashable value
        known = False
    if not known:
        raise ValueError(f"{name}: expected one of {sorted(choices)}, got {value!r}")
    return value


def check_probability(name: str, value: Any) -> float:
    """Returns ``value`` as a float if ``0 <= value < 1``.

    Raises:
        TypeError: ``value`` is not a real number.
        ValueError: ``value`` is outside ``[0, 1)``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{name}: expected a float in [0, 1), got {value!r} ({type(value).__name__})"
        )
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name}: expected a float in [0, 1), got {value}")
    return float(value)


def check_images(x: Any, in_channels: int, *, name: str = "x") -> None:
    """Checks that ``x`` is a floating batch of images with ``in_channels`` channels.

    Shape:
        x: ``(B, in_channels, H, W)``.

    Raises:
        TypeError: ``x`` is not a tensor.
        ValueError: wrong rank, channel count or dtype.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4 or x.shape[1] != in_channels:
        raise ValueError(f"{name}: expected shape (B, {in_channels}, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(
            f"{name}: expected a floating point tensor (normalize uint8 images first), got {x.dtype}"
        )


def check_features(features: Any, feat_dim: int, *, dense: bool, name: str = "features") -> None:
    """Checks the features given to ``forward_head``.

    Shape:
        features: ``(B, feat_dim, h, w)`` when ``dense`` else ``(B, feat_dim)``.

    Raises:
        TypeError: ``features`` is not a tensor.
        ValueError: wrong rank or feature dimension.
    """
    if not isinstance(features, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(features).__name__}")
    expected = f"(B, {feat_dim}, h, w)" if dense else f"(B, {feat_dim})"
    if features.ndim != (4 if dense else 2) or features.shape[1] != feat_dim:
        raise ValueError(f"{name}: expected shape {expected}, got {tuple(features.shape)}")
