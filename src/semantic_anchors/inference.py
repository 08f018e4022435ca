"""Whole-image and sliding-window inference (pure PyTorch)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["predict_logits", "slide_logits"]


def _pair(value: int | list[int] | tuple[int, int], name: str) -> tuple[int, int]:
    if isinstance(value, int):
        value = (value, value)
    if len(value) != 2 or min(value) <= 0:
        raise ValueError(f"`{name}` must be a positive int or (h, w) pair, got {value!r}")
    return int(value[0]), int(value[1])


@torch.no_grad()
def slide_logits(
    model: nn.Module,
    images: torch.Tensor,
    num_classes: int,
    crop_size: int | tuple[int, int],
    stride: int | tuple[int, int],
) -> torch.Tensor:
    """Average the logits of overlapping ``crop_size`` windows (the paper's large-image eval).

    Windows start every ``stride`` pixels and the last one is aligned to the border, as in
    mmsegmentation's ``slide_inference``; images smaller than the crop are run whole.

    Shape:
        - images: ``(B, C_in, H, W)``.
        - Output: ``(B, num_classes, H, W)``.
    """
    ch, cw = _pair(crop_size, "crop_size")
    sh, sw = _pair(stride, "stride")
    b, _, h, w = images.shape
    rows = max(h - ch + sh - 1, 0) // sh + 1
    cols = max(w - cw + sw - 1, 0) // sw + 1
    logits = images.new_zeros((b, num_classes, h, w), dtype=torch.float32)  # (B, K, H, W)
    count = images.new_zeros((1, 1, h, w), dtype=torch.float32)  # (1, 1, H, W)
    for r in range(rows):
        for c in range(cols):
            y1, x1 = min(r * sh, max(h - ch, 0)), min(c * sw, max(w - cw, 0))
            y2, x2 = min(y1 + ch, h), min(x1 + cw, w)
            window = model(images[:, :, y1:y2, x1:x2])  # (B, K, y2-y1, x2-x1)
            logits[:, :, y1:y2, x1:x2] += window.float()
            count[:, :, y1:y2, x1:x2] += 1
    return logits / count


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    images: torch.Tensor,
    mode: str = "whole",
    *,
    num_classes: int | None = None,
    crop_size: int | tuple[int, int] | None = None,
    stride: int | tuple[int, int] | None = None,
) -> torch.Tensor:
    """Logits of ``model`` on ``images`` in ``"whole"`` or ``"slide"`` mode.

    Raises:
        ValueError: unknown mode, or slide mode without ``crop_size`` / ``stride`` / ``num_classes``.
    """
    if mode == "whole":
        return model(images)
    if mode != "slide":
        raise ValueError(f"`mode` must be 'whole' or 'slide', got {mode!r}")
    if crop_size is None or stride is None or num_classes is None:
        raise ValueError(
            "slide inference needs `crop_size`, `stride` and `num_classes`, got "
            f"crop_size={crop_size}, stride={stride}, num_classes={num_classes}"
        )
    return slide_logits(model, images, num_classes, crop_size, stride)
