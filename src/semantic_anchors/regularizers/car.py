"""Class-aware regularization (CAR, Huang et al., ECCV 2022) under the regularizer contract."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from semantic_anchors._validation import check_float_in, check_non_negative
from semantic_anchors.regularizers.base import Regularizer
from semantic_anchors.regularizers.prototype import _class_means, _flatten_pixels

__all__ = ["ClassAwareRegularizer"]


def _masked_softmax(logits: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dim restricted to ``columns`` (bool ``(C,)``); finite if none."""
    return torch.softmax(logits.masked_fill(~columns, torch.finfo(logits.dtype).min), dim=-1)


class ClassAwareRegularizer(Regularizer):
    """CAR: intra-class compactness and inter-class separation around batch class centres.

    Class centres ``c_k`` are the mean features of the valid pixels of class ``k`` over the whole
    batch (labels nearest-resized). With ``K`` the classes present, ``N`` the valid pixels and
    ``s = 1 / sqrt(D)``, the three losses of the authors' code (``car_core/utils.py``) are:

    * intra-c2p: ``L_intra = (1 / (N D) * sum_i |f_i - sg(c_{y_i})|_1) ** 2`` (stop-gradient
      centres: only the features are pulled).
    * inter-c2c: ``P = softmax_k(s * c sg(c)^T)`` over present centres (key stop-gradient, query
      not, so the centres push each other through the features),
      ``L_c2c = (1 / K * sum_k sum_{j != k} relu(P_kj - t_c2c / (K - 1))) ** 2``.
    * inter-c2p: each pixel's similarity to the other centres, ``e_ij = s * f_i . sg(c_j)`` with
      the own class replaced by ``s * |sg(c_y)|^2``, ``Q_i = softmax_j(e_ij)``,
      ``L_c2p = (1 / N * sum_i sum_{j != y_i} relu(Q_ij - t_c2p / (K - 1))) ** 2``.

    The result is ``lambda_intra * L_intra + lambda_inter * (L_c2c + L_c2p)``. With the default
    ``include_absent=False`` every term is ``0`` (finite, zero gradient) when fewer than two
    classes (inter) or no pixel (all) is valid; it is always finite.

    Departures from the authors' TensorFlow code (see ``docs/baselines.md``): the losses act on
    the model's features directly (the authors insert a trainable ``1x1`` conv, CAR's
    ``linear_conv``, and regularize its output); classes absent from the batch are left out of
    the softmaxes, thresholds and means (``include_absent=True`` restores the authors' zero
    centres for them); ignored pixels are left out of the means and of the inter-c2p loss (the
    authors divide by all pixels and let ignored pixels into inter-c2p); the authors' clips
    (``[1e-7, 1 - 1e-7]`` on the hinged sums, ``>= 1e-5`` on ``L_intra``) are dropped; centres
    are per process under DDP (the authors all-reduce them across replicas).

    Args:
        num_classes: number of classes ``C``.
        feat_dim: feature dimension ``D``.
        dense: dense ``(B, D, h, w)`` or vector ``(B, D)`` features.
        lambda_intra: weight of the intra-c2p loss (authors: 1).
        lambda_inter: weight of the inter losses (authors: 1).
        inter_c2c: use the centre-to-centre loss (authors: on).
        inter_c2p: use the pixel-to-other-centre loss (on in the authors' released training
            recipe, ``use_inter_c2p_loss=True``; their function default is off).
        c2c_threshold: hinge ``t_c2c`` (authors: 0.5), divided by ``K - 1``.
        c2p_threshold: hinge ``t_c2p`` (authors: 0.25), divided by ``K - 1``.
        include_absent: treat absent classes as zero centres, as the authors' code does.
        ignore_index: label value to ignore.
        validate: the checks that sync the device: ``True`` every call, ``False`` never, an
            int ``N`` the first ``N`` calls (see :class:`Regularizer`).

    Attributes:
        last_stats: weighted ``loss_intra``, ``loss_c2c``, ``loss_c2p`` and ``num_present``.

    Shape:
        - features: ``(B, D, h, w)`` or ``(B, D)``; labels ``(B, H, W)`` or ``(B,)``.
        - Output: ``()``.

    Raises:
        ValueError: negative weights, thresholds outside ``[0, 1]``, and every input check of
            :class:`Regularizer`.

    Example:
        >>> car = ClassAwareRegularizer(num_classes=4, feat_dim=8)
        >>> feats = torch.randn(2, 8, 4, 4, requires_grad=True)
        >>> car(feats, torch.randint(0, 4, (2, 16, 16))).backward()
    """

    def __init__(
        self,
        num_classes: int,
        feat_dim: int,
        *,
        dense: bool = True,
        lambda_intra: float = 1.0,
        lambda_inter: float = 1.0,
        inter_c2c: bool = True,
        inter_c2p: bool = True,
        c2c_threshold: float = 0.5,
        c2p_threshold: float = 0.25,
        include_absent: bool = False,
        ignore_index: int | None = 255,
        validate: bool | int = True,
    ) -> None:
        super().__init__(
            num_classes, feat_dim, dense=dense, ignore_index=ignore_index, validate=validate
        )
        self.lambda_intra = check_non_negative("lambda_intra", lambda_intra)
        self.lambda_inter = check_non_negative("lambda_inter", lambda_inter)
        self.inter_c2c, self.inter_c2p = bool(inter_c2c), bool(inter_c2p)
        self.c2c_threshold = check_float_in("c2c_threshold", c2c_threshold, 0.0, 1.0)
        self.c2p_threshold = check_float_in("c2p_threshold", c2p_threshold, 0.0, 1.0)
        self.include_absent = bool(include_absent)

    def compute(
        self,
        features: torch.Tensor,
        labels: torch.Tensor,
        valid: torch.Tensor,
        classifier: Callable[[torch.Tensor], torch.Tensor] | None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Batch centres, then the intra-c2p, inter-c2c and inter-c2p losses; no device sync."""
        with torch.autocast(features.device.type, enabled=False):
            flat, safe, flat_valid = _flatten_pixels(features, labels, valid)  # (P, D), (P,), (P,)
            centres, counts = _class_means(flat, safe, flat_valid, self.num_classes)  # (C, D)
            present = counts > 0  # (C,)
            used = torch.ones_like(present) if self.include_absent else present  # (C,)
            num_used = used.sum().to(flat.dtype)
            weight = flat_valid.to(flat.dtype)  # (P,)
            num_valid = weight.sum().clamp(min=1)
            scale = 1.0 / math.sqrt(self.feat_dim)
            key = centres.detach()  # (C, D)
            zero = flat.new_zeros(())

            # intra-c2p: features towards their stop-gradient centre, L1 mean, squared.
            l1 = (flat - key[safe]).abs().sum(dim=1)  # (P,)
            loss_intra = ((l1 * weight).sum() / (num_valid * self.feat_dim)).square()

            loss_c2c, loss_c2p = zero, zero
            if self.inter_c2c:
                threshold = self.c2c_threshold / (num_used - 1).clamp(min=1)
                relation = _masked_softmax(centres @ key.T * scale, used)  # (C, C)
                eye = torch.eye(self.num_classes, dtype=flat.dtype, device=flat.device)  # (C, C)
                others = relation * (1 - eye)  # (C, C)
                per_class = torch.relu(others - threshold).sum(dim=1)  # (C,)
                loss_c2c = ((per_class * used).sum() / num_used.clamp(min=1)).square()
            if self.inter_c2p:
                threshold = self.c2p_threshold / (num_used - 1).clamp(min=1)
                own = safe[:, None]  # (P, 1)
                energy = flat @ key.T  # (P, C)
                energy = energy.scatter(1, own, key.square().sum(dim=1)[own])  # (P, C)
                relation = _masked_softmax(energy * scale, used)  # (P, C)
                others = relation.scatter(1, own, 0.0)  # (P, C)
                per_pixel = torch.relu(others - threshold).sum(dim=1)  # (P,)
                loss_c2p = ((per_pixel * weight).sum() / num_valid).square()

        weighted_intra = self.lambda_intra * loss_intra
        weighted_c2c = self.lambda_inter * loss_c2c
        weighted_c2p = self.lambda_inter * loss_c2p
        stats = {
            "loss_intra": weighted_intra.detach(),
            "loss_c2c": weighted_c2c.detach(),
            "loss_c2p": weighted_c2p.detach(),
            "num_present": present.sum(),
        }
        return weighted_intra + weighted_c2c + weighted_c2p, stats

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, lambda_intra={self.lambda_intra}, "
            f"lambda_inter={self.lambda_inter}, inter_c2c={self.inter_c2c}, "
            f"inter_c2p={self.inter_c2p}, c2c_threshold={self.c2c_threshold}, "
            f"c2p_threshold={self.c2p_threshold}, include_absent={self.include_absent}"
        )
