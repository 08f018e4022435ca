"""Center loss (Wen et al., ECCV 2016) with learnable class centres under the regularizer contract."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from semantic_anchors._validation import check_non_negative
from semantic_anchors.regularizers.base import Regularizer
from semantic_anchors.regularizers.prototype import _class_means, _flatten_pixels

__all__ = ["CenterLossRegularizer"]


class CenterLossRegularizer(Regularizer):
    """Pull features to learnable class centres: ``lambda / 2 * mean_i |f_i - c_{y_i}|^2``.

    The centres are an ``nn.Parameter`` of shape ``(C, D)`` (initialised at zero), so the
    optimizer that trains the model, built from the parameters of the module that contains this
    regularizer, trains them too: nothing else has to be registered.

    With ``decoupled=True`` (default) the centres' gradient is Wen et al.'s centre update instead
    of the loss gradient: ``grad c_j = sum_{i: y_i = j} (c_j - f_i) / (1 + n_j)`` (``n_j`` valid
    pixels / samples of class ``j`` in the batch), so an SGD step of learning rate ``lr`` is their
    update rule with ``alpha = lr``, independent of ``lambda`` and of how frequent the class is.
    The loss value and the features' gradient are unchanged. With ``decoupled=False`` the centres
    get the plain gradient ``lambda * sum_{i: y_i = j} (c_j - f_i) / N``, which for the usual
    small ``lambda`` barely moves them.

    Departures from Wen et al.: the centres are updated by the training optimizer (so momentum
    and weight decay apply to them) rather than by a separate rule; the loss is averaged over
    the valid pixels (samples) rather than summed over the mini-batch.

    Args:
        num_classes: number of classes ``C``.
        feat_dim: feature dimension ``D``.
        dense: dense ``(B, D, h, w)`` or vector ``(B, D)`` features.
        lambda_center: loss weight (Wen et al.'s face-recognition setting: 0.003).
        decoupled: give the centres Wen et al.'s update direction (see above).
        ignore_index: label value to ignore.
        validate: the checks that sync the device: ``True`` every call, ``False`` never, an
            int ``N`` the first ``N`` calls (see :class:`Regularizer`).

    Attributes:
        centers: ``nn.Parameter`` ``(C, D)``, the learnable class centres.
        last_stats: ``loss_center`` (weighted).

    Shape:
        - features: ``(B, D, h, w)`` or ``(B, D)``; labels ``(B, H, W)`` or ``(B,)``.
        - Output: ``()``.

    Raises:
        ValueError: negative ``lambda_center`` and every input check of :class:`Regularizer`.

    Example:
        >>> center = CenterLossRegularizer(num_classes=3, feat_dim=8, dense=False)
        >>> opt = torch.optim.SGD(center.parameters(), lr=0.5)
        >>> center(torch.randn(6, 8), torch.tensor([0, 1, 2, 0, 1, 2])).backward()
        >>> opt.step()
        >>> bool(center.centers.abs().sum() > 0)
        True
    """

    def __init__(
        self,
        num_classes: int,
        feat_dim: int,
        *,
        dense: bool = True,
        lambda_center: float = 0.003,
        decoupled: bool = True,
        ignore_index: int | None = 255,
        validate: bool | int = True,
    ) -> None:
        super().__init__(
            num_classes, feat_dim, dense=dense, ignore_index=ignore_index, validate=validate
        )
        self.lambda_center = check_non_negative("lambda_center", lambda_center)
        self.decoupled = bool(decoupled)
        self.centers = nn.Parameter(torch.zeros(self.num_classes, self.feat_dim))

    def compute(
        self,
        features: torch.Tensor,
        labels: torch.Tensor,
        valid: torch.Tensor,
        classifier: Callable[[torch.Tensor], torch.Tensor] | None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Center loss; with ``decoupled`` a zero-valued surrogate carries the centres' update."""
        with torch.autocast(features.device.type, enabled=False):
            flat, safe, flat_valid = _flatten_pixels(features, labels, valid)  # (P, D), (P,), (P,)
            centers = self.centers.to(flat.dtype)  # (C, D)
            weight = flat_valid.to(flat.dtype)  # (P,)
            num_valid = weight.sum().clamp(min=1)
            targets = centers.detach() if self.decoupled else centers  # (C, D)
            sq = (flat - targets[safe]).square().sum(dim=1)  # (P,)
            loss = self.lambda_center * 0.5 * (sq * weight).sum() / num_valid
            if self.decoupled:
                with torch.no_grad():
                    means, counts = _class_means(flat, safe, flat_valid, self.num_classes)
                sums = means * counts[:, None]  # (C, D)
                # d/dc_j = (n_j c_j - sum_{y_i=j} f_i) / (1 + n_j): Wen et al.'s delta c_j.
                surrogate = (
                    (0.5 * counts * centers.square().sum(dim=1) - (centers * sums).sum(dim=1))
                    / (1 + counts)
                ).sum()
                loss = loss + (surrogate - surrogate.detach())
        return loss, {"loss_center": loss.detach()}

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, lambda_center={self.lambda_center}, "
            f"decoupled={self.decoupled}"
        )
