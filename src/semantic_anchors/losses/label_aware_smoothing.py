"""Label-aware smoothing (LAS, Zhong et al., CVPR 2021, MiSLAS): a smoothing factor per class.

Frequent classes are more over-confident, so they get more smoothing: class ``y`` with ``N_y``
training samples is smoothed by ``eps_y = eps_K + (eps_1 - eps_K) * f(N_y)``, where ``eps_1``
(``smooth_head``) belongs to the most frequent class (``N_1``), ``eps_K`` (``smooth_tail``) to the
rarest (``N_K``), and ``f`` rises from 0 at ``N_K`` to 1 at ``N_1``; with ``x = (N_y - N_K) /
(N_1 - N_K)``:

* ``concave`` (the authors' default): ``f = sin(pi x / 2)``;
* ``linear``: ``f = x``;
* ``convex``: ``f = 1 - cos(pi x / 2)``;
* ``exp``: ``f = x ** power``.

The loss is ``(1 - eps_y) * (-log p_y) + eps_y * mean_j(-log p_j)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from semantic_anchors._validation import check_choice, check_float_in, check_int
from semantic_anchors.losses.logit_adjustment import (
    _check_logits,
    _class_counts,
    _compute_dtype,
    _ignore,
    _mean_over_valid,
)

__all__ = ["LabelAwareSmoothingLoss", "label_aware_smoothing"]

SHAPES = ("concave", "linear", "convex", "exp")


def label_aware_smoothing(
    class_counts: Sequence[float] | torch.Tensor,
    smooth_head: float = 0.3,
    smooth_tail: float = 0.0,
    shape: str = "concave",
    power: float | None = None,
) -> torch.Tensor:
    """The per-class smoothing factors ``eps_c`` of LAS (float64 ``(C,)``).

    A class whose count is the largest gets ``smooth_head``, the smallest ``smooth_tail``. When
    every class has the same count (``N_1 = N_K``, where the authors' formula divides by zero)
    every class gets ``smooth_head``.

    Args:
        class_counts: ``(C,)`` training counts (or frequencies; only ratios matter).
        smooth_head: ``eps_1`` in ``[0, 1]`` (authors: 0.3 for CIFAR-10-LT and ImageNet-LT,
            0.4 for CIFAR-100-LT).
        smooth_tail: ``eps_K`` in ``[0, 1]`` (authors: 0.0, 0.1 for CIFAR-100-LT).
        shape: ``"concave"``, ``"linear"``, ``"convex"`` or ``"exp"``.
        power: the exponent of ``"exp"`` (> 0; required there, refused otherwise).

    Raises:
        ValueError: bad counts, factors outside ``[0, 1]``, an unknown shape or a bad ``power``.

    Example:
        >>> label_aware_smoothing([100, 10, 1], 0.3, 0.0, "linear").tolist()
        [0.3, 0.02727272727272727, 0.0]
    """
    counts = _class_counts(class_counts, len(torch.as_tensor(class_counts).flatten()))  # (C,)
    head = check_float_in("smooth_head", smooth_head, 0.0, 1.0)
    tail = check_float_in("smooth_tail", smooth_tail, 0.0, 1.0)
    check_choice("shape", shape, SHAPES)
    if shape == "exp":
        if power is None:
            raise ValueError("`power` must be set (> 0) for shape='exp', got None")
        power = check_float_in("power", power, 0.0, math.inf, low_open=True, high_open=True)
    elif power is not None:
        raise ValueError(f"`power` only applies to shape='exp', got power={power} with {shape!r}")
    n_1, n_k = counts.max(), counts.min()
    if n_1 == n_k:
        return torch.full_like(counts, head)
    x = (counts - n_k) / (n_1 - n_k)  # (C,) in [0, 1]
    if shape == "concave":
        f = torch.sin(x * math.pi / 2)
    elif shape == "linear":
        f = x
    elif shape == "convex":
        f = 1 - torch.cos(x * math.pi / 2)
    else:
        f = x**power
    return tail + (head - tail) * f


class LabelAwareSmoothingLoss(nn.Module):
    """Label-aware smoothing cross-entropy, averaged over non-ignored targets.

    Args:
        num_classes: number of classes ``C``.
        class_frequencies: ``(C,)`` training counts (images; pixels for dense logits).
        smooth_head, smooth_tail, shape, power: as :func:`label_aware_smoothing` (defaults: the
            authors' CIFAR-10-LT / ImageNet-LT values, concave).
        ignore_index: target value ignored by the loss (``None``: none).

    Shape:
        - logits: ``(B, C)`` or ``(B, C, H, W)``; targets ``(B,)`` or ``(B, H, W)``.
        - Output: ``()`` (``0`` when every target is ignored).

    Raises:
        ValueError: bad frequencies or smoothing options; per call, logits / targets of the wrong
            shape.

    Example:
        >>> loss = LabelAwareSmoothingLoss(3, [100, 10, 1])
        >>> loss(torch.randn(4, 3), torch.tensor([0, 1, 2, 255])).shape
        torch.Size([])
    """

    def __init__(
        self,
        num_classes: int,
        class_frequencies: Sequence[float] | torch.Tensor,
        *,
        smooth_head: float = 0.3,
        smooth_tail: float = 0.0,
        shape: str = "concave",
        power: float | None = None,
        ignore_index: int | None = 255,
    ) -> None:
        super().__init__()
        self.num_classes = check_int("num_classes", num_classes, minimum=2)
        counts = _class_counts(class_frequencies, num_classes)
        smoothing = label_aware_smoothing(counts, smooth_head, smooth_tail, shape, power)
        self.register_buffer("smoothing", smoothing.float())  # (C,)
        self.shape, self.ignore_index = shape, ignore_index

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        _check_logits(logits, targets, self.num_classes)
        ignore = _ignore(self.ignore_index)
        logits = logits.to(_compute_dtype(logits))  # (B, C, ...)
        log_p = F.log_softmax(logits, dim=1)  # (B, C, ...)
        valid = targets != ignore  # (B, ...)
        safe = torch.where(valid, targets, torch.zeros_like(targets))  # (B, ...)
        nll = -log_p.gather(1, safe.unsqueeze(1)).squeeze(1)  # (B, ...)
        uniform = -log_p.mean(dim=1)  # (B, ...)
        eps = self.smoothing.to(logits.dtype)[safe]  # (B, ...)
        per_item = torch.where(valid, (1 - eps) * nll + eps * uniform, torch.zeros_like(nll))
        return _mean_over_valid(per_item, targets, ignore)

    def extra_repr(self) -> str:
        eps = [round(v, 4) for v in self.smoothing.tolist()[:10]]
        return f"num_classes={self.num_classes}, shape={self.shape!r}, smoothing={eps}"
