"""ProtoSeg's training losses (Zhou et al., CVPR 2022): PPC, PPD and the prototype update.

The model side is :class:`~semantic_anchors.regularizers.prototype_head.PrototypeClassifier`; this
regularizer, called as ``reg(features, labels, classifier)`` with that classifier and its unit
pixel embedding as ``features``, assigns each class's pixels to the class's ``M`` prototypes by
Sinkhorn-Knopp (an equal-partition optimal transport), adds the pixel-prototype contrastive loss
(PPC) and distance loss (PPD), and in training mode moves the prototypes towards the mean of
their assigned, correctly predicted pixels.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from semantic_anchors._validation import check_choice, check_float_in, check_int, check_non_negative
from semantic_anchors.regularizers.base import Regularizer, finite_rows
from semantic_anchors.regularizers.prototype import _flatten_pixels
from semantic_anchors.regularizers.prototype_head import PrototypeClassifier

__all__ = ["ProtoSegLoss", "sinkhorn_knopp"]


def _segment_logsumexp(x: torch.Tensor, bins: torch.Tensor, num_bins: int) -> torch.Tensor:
    """Per bin and column, ``log sum exp`` of the rows in that bin (no host sync).

    Shape:
        - x: ``(P, M)`` finite; bins: ``(P,)`` in ``[0, num_bins)``.
        - Output: ``(num_bins, M)`` (``-inf`` for an empty bin).
    """
    index = bins[:, None].expand_as(x)  # (P, M)
    peak = x.new_full((num_bins, x.shape[1]), -math.inf)
    peak = peak.scatter_reduce(0, index, x, reduce="amax", include_self=True)  # (G, M)
    total = x.new_zeros(num_bins, x.shape[1]).index_add(0, bins, torch.exp(x - peak[bins]))
    return peak + torch.log(total)  # (G, M)


@torch.no_grad()
def sinkhorn_knopp(
    scores: torch.Tensor,
    groups: torch.Tensor | None = None,
    num_groups: int | None = None,
    *,
    iterations: int = 3,
    epsilon: float = 0.05,
) -> torch.Tensor:
    """Equal-partition transport plan of each group's rows to the ``M`` columns (log domain).

    For each group ``g`` (ProtoSeg: the pixels of one class) with ``n_g`` rows (pixels) and the
    ``M`` columns (its prototypes), ``Q = exp(scores / epsilon)`` is scaled alternately so that
    every column carries ``n_g / M`` of the mass and every row 1, ``iterations`` times (the
    authors' ``distributed_sinkhorn``: 3 iterations, ``epsilon = 0.05``, ending with the rows).
    All groups are solved at once; computed with ``logsumexp`` so a small ``epsilon`` does not
    overflow ``exp``. No host-device sync.

    Args:
        scores: ``(P, M)`` similarities of each row to its group's columns.
        groups: ``(P,)`` group of each row in ``[0, num_groups)``; ``None``: one group.
        num_groups: number of groups (required with ``groups``).
        iterations: column-then-row scaling rounds (>= 1).
        epsilon: entropic regularisation (> 0); smaller is closer to a hard assignment.

    Returns:
        ``(P, M)`` plan, each row summing to 1 (the soft assignment of the row).

    Raises:
        ValueError: ``scores`` not 2-D, ``groups`` of another length, or bad ``iterations`` /
            ``epsilon``.
    """
    check_int("iterations", iterations, minimum=1)
    check_float_in("epsilon", epsilon, 0.0, math.inf, low_open=True, high_open=True)
    if scores.dim() != 2:
        raise ValueError(f"`scores` must be (P, M), got shape {tuple(scores.shape)}")
    if groups is None:
        groups, num_groups = scores.new_zeros(scores.shape[0], dtype=torch.long), 1
    elif groups.shape != scores.shape[:1] or num_groups is None:
        raise ValueError(
            f"`groups` must be ({scores.shape[0]},) with num_groups given, got shape "
            f"{tuple(groups.shape)} and num_groups={num_groups}"
        )
    log_q = scores.to(torch.promote_types(scores.dtype, torch.float32)) / epsilon  # (P, M)
    for _ in range(iterations):
        # Columns: each prototype gets the same share of its group's rows (constants cancel).
        log_q = log_q - _segment_logsumexp(log_q, groups, num_groups)[groups]  # (P, M)
        # Rows: each pixel's assignment sums to 1.
        log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True)  # (P, M)
    return torch.exp(log_q)  # (P, M)


def _classifier_prototypes(
    classifier: Callable[[torch.Tensor], torch.Tensor], num_classes: int, feat_dim: int
) -> tuple[torch.Tensor, PrototypeClassifier | None]:
    """``(C, M, D)`` prototypes and the prototype classifier (``None`` for a plain one)."""
    if isinstance(classifier, PrototypeClassifier):
        got = (classifier.num_classes, classifier.embed_dim)
        if got != (num_classes, feat_dim):
            raise ValueError(
                f"`classifier` must have num_classes={num_classes} and embed_dim={feat_dim} "
                f"(the features' width), got {got}"
            )
        return classifier.prototypes, classifier
    if isinstance(classifier, (nn.Linear, nn.Conv2d)):
        weight = classifier.weight.detach()
        if weight.dim() == 4 and tuple(weight.shape[2:]) != (1, 1):
            raise ValueError(
                f"`classifier` must be a 1x1 conv, got kernel {tuple(weight.shape[2:])}"
            )
        weight = weight.reshape(weight.shape[0], -1)  # (C, D)
        if tuple(weight.shape) != (num_classes, feat_dim):
            raise ValueError(
                f"`classifier` weight must be ({num_classes}, {feat_dim}), got {tuple(weight.shape)}"
            )
        return weight[:, None, :], None  # (C, 1, D): the weight rows as one prototype per class
    raise TypeError(
        "`classifier` must be a PrototypeClassifier (create_model(..., prototype_head="
        f"'protoseg')) or an nn.Linear / 1x1 nn.Conv2d, got {type(classifier).__name__}"
    )


class ProtoSegLoss(Regularizer):
    """ProtoSeg's pixel-prototype losses and its momentum prototype update.

    Per call, on the valid pixels ``i`` (unit embedding ``f_i``, label ``y_i``): the cosines
    ``s_i = f_i . p`` with all ``C x M`` prototypes; for each class, :func:`sinkhorn_knopp` of
    its pixels to its ``M`` prototypes, ``m_i`` = each pixel's best prototype under the plan;

    * PPC: cross-entropy over the ``C * M`` cosines (divided by ``temperature``) with target
      ``(y_i, m_i)``; PPD: ``(1 - s_i[y_i, m_i])^2``; both averaged over valid pixels (0 with
      none), returned as ``ppc_weight * PPC + ppd_weight * PPD``; gradient to the features only.
    * Training mode, with a :class:`PrototypeClassifier`: the pixels its logits classify
      correctly are assigned again (``update_assignment``), each prototype with at least one
      becomes ``normalize(momentum * p + (1 - momentum) * normalize(sum of its pixels))``, and
      every prototype is re-normalised. Under ``torch.distributed`` the sums and counts are
      all-reduced first, so every rank applies the same update.

    With a plain ``nn.Linear`` / 1x1 ``nn.Conv2d`` classifier the weight rows (detached,
    normalised) are one prototype per class: PPC is then a cosine-softmax loss, PPD pulls each
    feature's direction to its class weight, and nothing is updated.

    Args:
        num_classes: classes ``C``.
        feat_dim: feature (embedding) width; equals the classifier's ``embed_dim``.
        dense: dense or vector features.
        ppc_weight: weight of PPC (authors' config ``loss_ppc_weight``: 0.01).
        ppd_weight: weight of PPD (authors' ``loss_ppd_weight``: 0.001).
        temperature: PPC divides the cosines by it (authors' code: none, i.e. 1).
        momentum: prototype EMA factor ``gamma`` (0.999), weight of the old prototype.
        sinkhorn_iterations: Sinkhorn rounds (3). sinkhorn_epsilon: its regularisation (0.05).
        update_assignment: ``"gumbel"`` (the authors' code: the update uses a hard Gumbel-softmax
            sample of the plan, the targets its argmax) or ``"argmax"`` (the paper: both argmax).
        update_prototypes: ``False`` freezes the prototypes (the authors' ``update_prototype``).
        ignore_index: label value ignored (255).
        validate: see :class:`Regularizer`.

    Attributes:
        last_stats: ``loss_ppc`` and ``loss_ppd`` (weighted), ``num_updated`` (prototypes moved
            this call) and ``pixel_acc`` (valid pixels the prototype logits classify correctly;
            0 without a prototype classifier or outside training).

    Shape:
        - features: ``(B, D, h, w)`` or ``(B, D)``; labels ``(B, H, W)`` or ``(B,)``.
        - Output: ``()``.

    Raises:
        ValueError / TypeError: bad options, every input check of :class:`Regularizer`, a
            classifier of another size or kind.

    Example:
        >>> from semantic_anchors.regularizers.prototype_head import PrototypeClassifier
        >>> head = PrototypeClassifier(16, num_classes=3, num_prototypes=4)
        >>> loss_fn = ProtoSegLoss(num_classes=3, feat_dim=16)
        >>> emb = head.embed(torch.randn(2, 16, 6, 6))
        >>> loss = loss_fn(emb, torch.randint(0, 3, (2, 24, 24)), head)
        >>> loss.backward()
        >>> sorted(loss_fn.last_stats)
        ['loss_ppc', 'loss_ppd', 'num_updated', 'pixel_acc']
    """

    requires_classifier = True

    def __init__(
        self,
        num_classes: int,
        feat_dim: int,
        *,
        dense: bool = True,
        ppc_weight: float = 0.01,
        ppd_weight: float = 0.001,
        temperature: float = 1.0,
        momentum: float = 0.999,
        sinkhorn_iterations: int = 3,
        sinkhorn_epsilon: float = 0.05,
        update_assignment: str = "gumbel",
        update_prototypes: bool = True,
        ignore_index: int | None = 255,
        validate: bool | int = True,
    ) -> None:
        super().__init__(
            num_classes, feat_dim, dense=dense, ignore_index=ignore_index, validate=validate
        )
        self.ppc_weight = check_non_negative("ppc_weight", ppc_weight)
        self.ppd_weight = check_non_negative("ppd_weight", ppd_weight)
        self.temperature = check_float_in(
            "temperature", temperature, 0.0, math.inf, low_open=True, high_open=True
        )
        self.momentum = check_float_in("momentum", momentum, 0.0, 1.0, high_open=True)
        self.sinkhorn_iterations = check_int("sinkhorn_iterations", sinkhorn_iterations, minimum=1)
        self.sinkhorn_epsilon = check_float_in(
            "sinkhorn_epsilon", sinkhorn_epsilon, 0.0, math.inf, low_open=True, high_open=True
        )
        self.update_assignment = check_choice(
            "update_assignment", update_assignment, ("gumbel", "argmax")
        )
        if not isinstance(update_prototypes, bool):
            raise TypeError(f"`update_prototypes` must be a bool, got {update_prototypes!r}")
        self.update_prototypes = update_prototypes

    @torch.no_grad()
    def _update(
        self,
        head: PrototypeClassifier,
        emb: torch.Tensor,
        similarity: torch.Tensor,
        labels: torch.Tensor,
        valid: torch.Tensor,
        plan: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Momentum update of ``head.prototypes`` in place; ``(num_updated, correct mask)``."""
        c, m, e = head.prototypes.shape
        logits = head.logits_from_similarity(similarity)  # (P, C), as the model predicts
        correct = valid & (logits.argmax(dim=1) == labels)  # (P,)
        if self.update_assignment == "gumbel":  # hard Gumbel-softmax of the plan as logits
            noise = -torch.empty_like(plan).exponential_().log()  # (P, M) standard Gumbel
            slot = (plan + noise).argmax(dim=1)  # (P,)
        else:
            slot = plan.argmax(dim=1)  # (P,)
        bins = torch.where(correct, labels * m + slot, torch.full_like(labels, c * m))  # (P,)
        stats = emb.new_zeros(c * m + 1, e + 1)  # per prototype: sum of embeddings, count
        stats = stats.index_add(0, bins, torch.cat([emb, emb.new_ones(emb.shape[0], 1)], 1))
        stats = stats[: c * m]  # (C*M, E+1); the last bin held the other pixels
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(stats)  # every rank: the same sums, so the same prototypes
        sums, counts = stats[:, :e], stats[:, e]  # (C*M, E), (C*M,)
        old = F.normalize(head.prototypes.reshape(c * m, e).to(emb.dtype), dim=1)  # (C*M, E)
        moved = self.momentum * old + (1.0 - self.momentum) * F.normalize(sums, dim=1)
        # A prototype moves only with finite sums (a non-finite step never enters the state).
        new = torch.where((counts > 0)[:, None] & finite_rows(moved)[:, None], moved, old)
        head.prototypes.copy_(F.normalize(new, dim=1).reshape(c, m, e))
        return (counts > 0).sum(), correct

    def compute(
        self,
        features: torch.Tensor,
        labels: torch.Tensor,
        valid: torch.Tensor,
        classifier: Callable[[torch.Tensor], torch.Tensor] | None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Sinkhorn assignment, PPC + PPD, then (training) the prototype update; no sync."""
        assert classifier is not None  # guaranteed by Regularizer.forward
        protos, head = _classifier_prototypes(classifier, self.num_classes, self.feat_dim)
        c, m = protos.shape[:2]
        with torch.autocast(features.device.type, enabled=False):
            flat, safe, flat_valid = _flatten_pixels(features, labels, valid)  # (P, D), (P,)
            emb = F.normalize(flat, dim=1)  # (P, D), unit already for ProtoSeg's embedding
            unit = F.normalize(protos.to(emb.dtype), dim=-1).reshape(c * m, -1)  # (C*M, D)
            similarity = emb @ unit.T  # (P, C*M)
            with torch.no_grad():
                index = safe[:, None, None].expand(-1, 1, m)  # (P, 1, M)
                own = similarity.detach().view(-1, c, m).gather(1, index).squeeze(1)  # (P, M)
                groups = torch.where(flat_valid, safe, torch.full_like(safe, c))  # ignored: bin C
                plan = sinkhorn_knopp(
                    own, groups, c + 1,
                    iterations=self.sinkhorn_iterations, epsilon=self.sinkhorn_epsilon,
                )  # fmt: skip
                target = safe * m + plan.argmax(dim=1)  # (P,) in [0, C*M)
            scaled = similarity / self.temperature  # (P, C*M)
            positive = similarity.gather(1, target[:, None]).squeeze(1)  # (P,)
            ppc = torch.logsumexp(scaled, dim=1) - positive / self.temperature  # (P,)
            ppd = (1.0 - positive).pow(2)  # (P,)
            count = flat_valid.sum().clamp(min=1).to(emb.dtype)
            loss_ppc = torch.where(flat_valid, ppc, 0.0).sum() / count
            loss_ppd = torch.where(flat_valid, ppd, 0.0).sum() / count
            num_updated = torch.zeros((), dtype=torch.long, device=emb.device)
            pixel_acc = emb.new_zeros(())
            if self.training and self.update_prototypes and head is not None:
                num_updated, correct = self._update(
                    head, emb.detach(), similarity.detach().view(-1, c, m), safe, flat_valid, plan
                )
                pixel_acc = correct.sum().to(emb.dtype) / count
        weighted_ppc = self.ppc_weight * loss_ppc
        weighted_ppd = self.ppd_weight * loss_ppd
        stats = {
            "loss_ppc": weighted_ppc.detach(),
            "loss_ppd": weighted_ppd.detach(),
            "num_updated": num_updated,
            "pixel_acc": pixel_acc.detach(),
        }
        return weighted_ppc + weighted_ppd, stats

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, ppc_weight={self.ppc_weight}, ppd_weight={self.ppd_weight}, "
            f"temperature={self.temperature}, momentum={self.momentum}, "
            f"sinkhorn_iterations={self.sinkhorn_iterations}, "
            f"sinkhorn_epsilon={self.sinkhorn_epsilon}, update_assignment={self.update_assignment!r}"
        )
