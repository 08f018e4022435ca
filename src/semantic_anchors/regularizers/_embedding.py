"""The trainable anchor embedding ``h_psi`` and how anchors go through a user's classifier."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class AnchorEmbedding(nn.Module):
    """``h_psi``: maps the pre-defined anchors ``(C, T)`` into the semantic space ``(C, D)``.

    ``dense=True`` follows the authors' segmentation code: two ``Linear-BN-ReLU`` blocks and a
    ``1x1 Conv(no bias)-BN-ReLU``; ``dense=False`` (classification) uses two ``Linear-BN-ReLU``.
    Batch norm sees the ``C`` anchors as its batch. The anchors' width ``T`` is ``D`` for the
    random anchors and a text model's width for text anchors (then the first Linear is ``T x D``).

    Shape:
        - Input: ``(C, T)``, ``T = in_dim`` (default ``D``).
        - Output: ``(C, D)``.
    """

    def __init__(self, feat_dim: int, dense: bool = True, in_dim: int | None = None) -> None:
        super().__init__()
        d = feat_dim
        self.linear = nn.Sequential(
            nn.Linear(in_dim or d, d), nn.BatchNorm1d(d), nn.ReLU(inplace=True),
            nn.Linear(d, d), nn.BatchNorm1d(d), nn.ReLU(inplace=True),
        )  # fmt: skip
        self.conv: nn.Sequential | None = None
        if dense:
            self.conv = nn.Sequential(
                nn.Conv2d(d, d, kernel_size=1, bias=False), nn.BatchNorm2d(d), nn.ReLU(inplace=True)
            )
            # The authors' ConvModule initialises its conv with Kaiming (fan_out, ReLU).
            nn.init.kaiming_normal_(self.conv[0].weight, mode="fan_out", nonlinearity="relu")

    def forward(self, anchors: torch.Tensor) -> torch.Tensor:
        x = self.linear(anchors)  # (C, D)
        if self.conv is not None:
            x = self.conv(x[:, :, None, None])[:, :, 0, 0]  # (C, D)
        return x


def _parameter_dtype(module: object) -> torch.dtype | None:
    if isinstance(module, nn.Module):
        for param in module.parameters():
            return param.dtype
    return None


def classify_anchors(
    classifier: Callable[[torch.Tensor], torch.Tensor],
    embedded: torch.Tensor,
    num_classes: int,
    *,
    no_object: bool = False,
) -> torch.Tensor:
    """Run the model's own classifier on the embedded anchors and return ``(C, C)`` logits.

    With ``no_object=True`` the classifier has one output more, last, for "no object" (the
    class head of a query-based model: Mask2Former, DETR) and the logits are ``(C, C + 1)``.

    ``nn.Conv2d`` classifiers get ``(C, D, 1, 1)``, anything else ``(C, D)``. The anchors are cast
    to the classifier's parameter dtype (a model kept in bf16 or float64) and the logits come back
    in ``promote_types(dtype, float32)``: float32 for bf16 / fp16 / float32 classifiers, float64
    for a float64 one, so the auxiliary CE and the gate never lose a float64 model's precision.

    Raises:
        ValueError: the classifier expects another input width or does not return ``C`` logits
            per anchor.
    """
    feat_dim = embedded.shape[1]
    expected_in = getattr(classifier, "in_channels", getattr(classifier, "in_features", None))
    if isinstance(expected_in, int) and expected_in != feat_dim:
        raise ValueError(
            f"`classifier` takes {expected_in} input features but the regularizer was built with "
            f"feat_dim={feat_dim}: pass the model's final classifier, or fix feat_dim"
        )
    dtype = _parameter_dtype(classifier)
    x = embedded if dtype is None else embedded.to(dtype)  # (C, D)
    if isinstance(classifier, nn.Conv2d):
        logits = classifier(x[:, :, None, None])  # (C, C, 1, 1)
    else:
        logits = classifier(x)  # (C, C) or (C, C, 1, 1)
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"`classifier` must return a tensor, got {type(logits).__name__}")
    logits = logits.reshape(logits.shape[0], -1) if logits.dim() > 2 else logits
    outputs = num_classes + 1 if no_object else num_classes
    if tuple(logits.shape) != (num_classes, outputs):
        what = (
            "num_classes + 1 outputs, the last for no object"
            if no_object
            else "num_classes outputs"
        )
        hint = (
            "; a classifier with a last no-object output needs no_object=True"
            if not no_object and tuple(logits.shape) == (num_classes, num_classes + 1)
            else ""
        )
        raise ValueError(
            f"`classifier` must map the ({num_classes}, {feat_dim}) anchors to "
            f"({num_classes}, {outputs}) logits ({what}), got {tuple(logits.shape)}{hint}"
        )
    return logits.to(torch.promote_types(logits.dtype, torch.float32))  # (C, C) or (C, C + 1)
