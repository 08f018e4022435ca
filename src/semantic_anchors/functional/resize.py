"""Resizing logits to an input's size, as every dense model and wrapper does it."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = ["upsample_like"]


def upsample_like(logits: Tensor, like: Tensor) -> Tensor:
    """Bilinear resize (``align_corners=False``, as mmseg and transformers) of ``logits`` to the
    spatial size of ``like``; returned as is when the sizes already agree.

    Example:
        >>> import torch
        >>> upsample_like(torch.zeros(1, 3, 4, 4), torch.zeros(1, 1, 8, 8)).shape
        torch.Size([1, 3, 8, 8])
    """
    if logits.shape[-2:] == like.shape[-2:]:
        return logits
    return F.interpolate(logits, size=like.shape[-2:], mode="bilinear", align_corners=False)
