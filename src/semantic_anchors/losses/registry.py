"""``build_loss(name, ...)`` returns ``loss_fn(logits, targets) -> scalar`` for the config's ``loss``."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from semantic_anchors._registry import Registry
from semantic_anchors.losses.balanced_softmax import BalancedSoftmaxLoss
from semantic_anchors.losses.focal import FocalLoss
from semantic_anchors.losses.grw import GRWCrossEntropyLoss
from semantic_anchors.losses.label_aware_smoothing import LabelAwareSmoothingLoss
from semantic_anchors.losses.ldam import LDAMLoss
from semantic_anchors.losses.logit_adjustment import LogitAdjustedLoss

__all__ = ["LOSSES", "build_loss"]


class CrossEntropy(nn.Module):
    """Plain cross-entropy with ``ignore_index`` (dense or vector logits)."""

    def __init__(self, ignore_index: int = 255, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.ignore_index, self.label_smoothing = ignore_index, label_smoothing

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(
            logits, targets, ignore_index=self.ignore_index, label_smoothing=self.label_smoothing
        )


# What build_loss supplies itself, to every loss whose constructor takes it.
_SUPPLIED = ("num_classes", "class_frequencies", "ignore_index")

LOSSES: Registry[Callable[..., nn.Module]] = Registry("loss", supplied=_SUPPLIED)
LOSSES.add("ce", CrossEntropy)
LOSSES.add("balanced-softmax", BalancedSoftmaxLoss)
LOSSES.add("logit-adjustment", LogitAdjustedLoss)
LOSSES.add("ldam-drw", LDAMLoss)
LOSSES.add("focal", FocalLoss)
LOSSES.add("grw", GRWCrossEntropyLoss)  # DisAlign's stage 2
LOSSES.add("las", LabelAwareSmoothingLoss)  # MiSLAS' stage 2


def build_loss(
    name: str,
    *,
    num_classes: int,
    class_frequencies: Sequence[float],
    ignore_index: int = 255,
    **options: Any,
) -> nn.Module:
    """Build a loss module by name; options are checked against what it accepts.

    ``num_classes``, ``class_frequencies`` and ``ignore_index`` are passed to every loss whose
    constructor takes them; ``options`` are the loss's own keyword arguments, e.g.
    ``build_loss("ldam-drw", num_classes=10, class_frequencies=counts, drw_start_step=480)``.
    A loss with a ``set_step(step)`` method (``ldam-drw``) expects the training loop to call it
    with the optimizer step before each training step.

    Raises:
        ValueError: unknown name (lists the valid ones) or an option the loss does not take
            (lists the ones it does).
    """
    LOSSES.check_options(name, options)
    factory = LOSSES[name]
    parameters = inspect.signature(factory).parameters
    supplied = {
        "num_classes": num_classes, "class_frequencies": class_frequencies,
        "ignore_index": ignore_index,
    }  # fmt: skip
    return factory(**{k: v for k, v in supplied.items() if k in parameters}, **options)
