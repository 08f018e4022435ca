"""Semantic Anchor Regularization (SAR), paper Eq. 4-9, as the authors' training code runs it."""

from __future__ import annotations

from collections.abc import Callable

import torch

from semantic_anchors._validation import check_choice, check_float_in, check_non_negative
from semantic_anchors.anchors import make_anchors
from semantic_anchors.functional.anchor_ce import anchor_gate, reweighted_anchor_ce
from semantic_anchors.functional.p2a import pixel_to_anchor_loss
from semantic_anchors.regularizers._embedding import AnchorEmbedding, classify_anchors
from semantic_anchors.regularizers.base import Regularizer, finite_rows

__all__ = ["SemanticAnchorRegularizer"]


class SemanticAnchorRegularizer(Regularizer):
    """Pull each class's features towards a classifier-aware semantic anchor.

    Each call: the fixed anchors ``A`` pass through the trainable embedding ``h_psi``; the model's
    own classifier classifies them (reweighted auxiliary CE, Eq. 5-7); if every anchor is
    classified correctly with probability above ``delta`` (the gate), the semantic anchors
    ``A_hat`` are updated by EMA (Eq. 8; the first open gate copies) and the features are pulled to
    ``A_hat[y]`` by an MSE averaged over channels and valid pixels (Eq. 4). The result is
    ``lambda_aux * L_aux + lambda_p2a * L_p2a`` (Eq. 9 without the main CE).

    Args:
        num_classes: number of classes ``C``.
        feat_dim: feature dimension ``D`` (channels of the classifier's input).
        dense: segmentation form (dense features, embedding with the final 1x1 conv block) or
            classification form (vector features, two Linear-BN-ReLU).
        anchors: pre-defined anchor source (``"normal"``, ``"orthogonal"``, ``"etf"``) or a
            ``(C, T)`` tensor, e.g. text anchors from ``make_anchors("text", C, D,
            class_names=...)``; the embedding maps ``T`` to ``D`` (``T = D`` for the random
            sources); see :func:`semantic_anchors.make_anchors`.
        lambda_aux: weight of the auxiliary anchor CE (paper: 1).
        lambda_p2a: weight of the pixel-to-anchor loss (paper: 0.1; 0.05 for DeepLabV3).
        tau: confidence above which an anchor's CE weight is suppressed (Eq. 6; paper 0.9).
        delta: probability every anchor must exceed for the gate to open (paper 0.8).
        momentum: EMA factor ``alpha`` of Eq. 8 (paper 0.999), weight of the old value.
        ignore_index: label value ignored in the pixel-to-anchor loss (default 255); it must not
            be a class index, so with more than 255 classes pass e.g. ``-1`` or None.
        gate: ``"all"`` (paper: open only when every anchor passes) or ``"class"`` (update and
            use the semantic anchor of each passing class independently).
        use_ema: ``False`` replaces the semantic anchors by the current embedded anchors on each
            open gate (Table 7 ablation).
        reweight: ``False`` uses the plain mean CE over anchors (Table 7 ablation).
        validate: the checks that sync the device (finite features, label range): ``True``
            every call, ``False`` never, an int ``N`` the first ``N`` calls (training: 10).
        generator: optional ``torch.Generator`` for the pre-defined anchors.
        no_object: the classifier has ``C + 1`` outputs, the last for "no object" (the class
            head of a query-based model; see :mod:`semantic_anchors.queries`). The no-object
            logit stays in the softmax of the anchor CE and of the gate: an anchor must be
            classified as its class against "no object" too, as a matched query is by the
            model's own class loss. No anchor is made for it and no feature is pulled to it.

    Attributes:
        anchors: buffer ``(C, D)``, the pre-defined anchors ``A`` (fixed).
        embedding: the trainable ``h_psi`` module.
        semantic_anchors: buffer ``(C, D)``, the EMA semantic anchors ``A_hat`` (float32; float64
            after ``.double()``, in which case the whole auxiliary stream runs in float64).
        initialized: buffer ``(C,)`` bool, which rows of ``semantic_anchors`` hold a value.
        last_stats: ``loss_aux`` and ``loss_p2a`` (weighted), ``gate_open``, ``num_confident``
            (anchors passing the gate test) and ``min_anchor_prob`` of the last call.

    Shape:
        - features: ``(B, D, h, w)`` (dense) or ``(B, D)``.
        - labels: ``(B, H, W)`` (nearest-resized to ``(h, w)``) or ``(B,)``.
        - Output: ``()``.

    Raises:
        ValueError: ``num_classes < 2``; ``ignore_index`` in ``[0, num_classes)``; ``tau`` /
            ``delta`` outside ``(0, 1]``; ``momentum`` outside ``[0, 1)``; negative lambdas;
            unknown ``gate``; bad anchors; and, per call, everything
            :meth:`Regularizer.forward` checks (including empty or 0-sized features) plus a
            classifier of the wrong size.

    Example:
        >>> import torch.nn.functional as F
        >>> head = torch.nn.Conv2d(16, 4, 1)
        >>> sar = SemanticAnchorRegularizer(num_classes=4, feat_dim=16)
        >>> feats = torch.randn(2, 16, 8, 8, requires_grad=True)
        >>> labels = torch.randint(0, 4, (2, 32, 32))
        >>> logits = F.interpolate(head(feats), size=(32, 32), mode="bilinear")
        >>> loss = F.cross_entropy(logits, labels, ignore_index=255) + sar(feats, labels, head)
        >>> loss.backward()
    """

    requires_classifier = True

    def __init__(
        self,
        num_classes: int,
        feat_dim: int,
        *,
        dense: bool = True,
        anchors: str | torch.Tensor = "normal",
        lambda_aux: float = 1.0,
        lambda_p2a: float = 0.1,
        tau: float = 0.9,
        delta: float = 0.8,
        momentum: float = 0.999,
        ignore_index: int | None = 255,
        gate: str = "all",
        use_ema: bool = True,
        reweight: bool = True,
        validate: bool | int = True,
        generator: torch.Generator | None = None,
        no_object: bool = False,
    ) -> None:
        super().__init__(
            num_classes, feat_dim, dense=dense, ignore_index=ignore_index, validate=validate
        )
        self.lambda_aux = check_non_negative("lambda_aux", lambda_aux)
        self.lambda_p2a = check_non_negative("lambda_p2a", lambda_p2a)
        self.tau = check_float_in("tau", tau, 0.0, 1.0, low_open=True)
        self.delta = check_float_in("delta", delta, 0.0, 1.0, low_open=True)
        self.momentum = check_float_in("momentum", momentum, 0.0, 1.0, high_open=True)
        self.gate = check_choice("gate", gate, ("all", "class"))
        self.use_ema = bool(use_ema)
        self.reweight = bool(reweight)
        self.no_object = bool(no_object)
        c, d = self.num_classes, self.feat_dim
        if isinstance(anchors, str) and anchors == "text":
            raise ValueError(
                'anchors="text" needs the class names: build them with make_anchors("text", C, D, '
                "class_names=[...]) and pass the (C, T) tensor"
            )
        if isinstance(anchors, torch.Tensor):
            if anchors.dim() != 2 or anchors.shape[0] != c:
                raise ValueError(
                    f"`anchors` tensor must have shape (num_classes, T) = ({c}, T), one row per "
                    f"class of any width T, got {tuple(anchors.shape)}"
                )
            base = make_anchors(anchors, c, int(anchors.shape[1]))  # (C, T): any width T
        else:
            base = make_anchors(anchors, c, d, generator=generator)  # (C, D)
        self.register_buffer("anchors", base)
        self.embedding = AnchorEmbedding(d, dense=dense, in_dim=base.shape[1])
        self.register_buffer("semantic_anchors", torch.zeros(c, d))
        self.register_buffer("initialized", torch.zeros(c, dtype=torch.bool))

    def embedded_anchors(self) -> torch.Tensor:
        """``h_psi(A)`` with autocast off, in the embedding's dtype (float32). Shape ``(C, D)``."""
        dtype = self.embedding.linear[0].weight.dtype
        with torch.autocast(self.anchors.device.type, enabled=False):
            return self.embedding(self.anchors.to(dtype))  # (C, D)

    @torch.no_grad()
    def _update_semantic_anchors(self, embedded: torch.Tensor, passing: torch.Tensor) -> None:
        """Eq. 8 for the rows in ``passing``: copy on first use, EMA afterwards (in place)."""
        new = embedded.detach().to(self.semantic_anchors.dtype)  # (C, D)
        if self.use_ema:
            ema = self.momentum * self.semantic_anchors + (1.0 - self.momentum) * new  # (C, D)
            new = torch.where(self.initialized[:, None], ema, new)  # (C, D)
        self.semantic_anchors.copy_(torch.where(passing[:, None], new, self.semantic_anchors))
        self.initialized |= passing

    def compute(
        self,
        features: torch.Tensor,
        labels: torch.Tensor,
        valid: torch.Tensor,
        classifier: Callable[[torch.Tensor], torch.Tensor] | None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Aux CE, gate, EMA update, then the pixel-to-anchor loss; no host-device sync."""
        assert classifier is not None  # guaranteed by Regularizer.forward
        embedded = self.embedded_anchors()  # (C, D)
        with torch.autocast(embedded.device.type, enabled=False):
            logits = classify_anchors(
                classifier, embedded, self.num_classes, no_object=self.no_object
            )  # (C, C), or (C, C + 1) with no_object: the softmaxes below keep its column
        loss_aux = reweighted_anchor_ce(logits, tau=self.tau, reweight=self.reweight)

        passing = anchor_gate(logits, delta=self.delta)  # (C,) bool
        # A non-finite embedded anchor never enters the state: it fails the gate test.
        passing = passing & finite_rows(embedded.detach())  # (C,)
        # Which classes' semantic anchors are updated and used this step.
        open_classes = passing.all().expand_as(passing) if self.gate == "all" else passing  # (C,)
        if self.training:
            self._update_semantic_anchors(embedded, open_classes)
        use = open_classes & self.initialized  # (C,)
        safe_labels = torch.where(valid, labels, torch.zeros_like(labels))  # (B, h, w) or (B,)
        pixel_mask = valid & use[safe_labels]  # (B, h, w) or (B,)
        loss_p2a = pixel_to_anchor_loss(features, labels, self.semantic_anchors, pixel_mask)

        weighted_aux = self.lambda_aux * loss_aux
        weighted_p2a = self.lambda_p2a * loss_p2a
        probs = torch.diagonal(torch.softmax(logits.detach(), dim=1))  # (C,)
        stats = {
            "loss_aux": weighted_aux.detach(),
            "loss_p2a": weighted_p2a.detach(),
            "gate_open": use.any(),
            "num_confident": passing.sum(),
            "min_anchor_prob": probs.min(),
        }
        return weighted_aux + weighted_p2a, stats

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, lambda_aux={self.lambda_aux}, lambda_p2a={self.lambda_p2a}, "
            f"tau={self.tau}, delta={self.delta}, momentum={self.momentum}, gate={self.gate!r}, "
            f"use_ema={self.use_ema}, reweight={self.reweight}"
            + (", no_object=True" if self.no_object else "")
        )
