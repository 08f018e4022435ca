"""The auxiliary anchor classification of SAR: reweighted CE (paper Eq. 5-7) and the gate."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["reweighted_anchor_ce", "anchor_gate"]


def _compute_dtype(logits: torch.Tensor) -> torch.dtype:
    """float32 for float32 / bf16 / fp16 logits, float64 for float64 ones (never lower)."""
    return torch.promote_types(logits.dtype, torch.float32)


def reweighted_anchor_ce(
    logits: torch.Tensor, tau: float = 0.9, reweight: bool = True, eps: float = 1e-9
) -> torch.Tensor:
    """Cross-entropy of classifying anchor ``c`` as class ``c``, reweighted as in Eq. 5-7.

    With ``p_c = softmax(logits)[c, c]``: anchors with ``p_c > tau`` get ``p_c = 1`` (Eq. 6), then
    ``w_c = log p_c / (sum_i log p_i + eps)`` (Eq. 7) and the loss is ``sum_c w_c * CE_c`` (Eq. 5).
    The weights are not detached, exactly as the authors' training code; when every anchor is
    above ``tau`` all weights are 0 and so is the loss. ``reweight=False`` gives the plain mean CE.
    Computed in ``promote_types(logits.dtype, float32)``: float32 for bf16 / fp16 / float32
    logits, float64 for float64 logits.

    Args:
        logits: ``(C, C)``; row ``c`` holds the classifier's logits for embedded anchor ``c``.
            ``(C, C + 1)`` for a classifier with a last "no object" output: it stays in the
            softmax, so an anchor is also classified against it.
        tau: confidence above which an anchor is considered learned (paper: 0.9).
        reweight: use Eq. 6-7 (True) or the mean CE over anchors (False).
        eps: the ``1e-9`` of the authors' code, keeping the ratio finite.

    Shape:
        - logits: ``(C, C)`` or ``(C, C + 1)``.
        - Output: ``()``.

    Example:
        >>> reweighted_anchor_ce(torch.eye(3) * 10).item()
        0.0
    """
    log_probs = F.log_softmax(logits.to(_compute_dtype(logits)), dim=1)  # (C, C)
    log_p = torch.diagonal(log_probs)  # (C,) log p_c
    ce = -log_p  # (C,)
    if not reweight:
        return ce.mean()
    # Eq. 6 with log(1) = 0 for confident anchors; computed in log space for stability.
    suppressed = torch.where(log_p.exp() > tau, torch.zeros_like(log_p), log_p)  # (C,)
    weights = suppressed / (suppressed.sum() + eps)  # (C,) Eq. 7
    return (weights * ce).sum()


def anchor_gate(logits: torch.Tensor, delta: float = 0.8) -> torch.Tensor:
    """Which anchors are classified as their own class with probability above ``delta``.

    Anchor ``c`` passes when ``argmax(logits[c]) == c`` and ``softmax(logits)[c, c] > delta``
    (the raw probability, before Eq. 6). SAR's default gate opens only when all anchors pass.
    With a last "no object" column (``(C, C + 1)`` logits) an anchor whose argmax is "no
    object" fails.
    The probabilities are computed in ``promote_types(logits.dtype, float32)``, like the CE.

    Shape:
        - logits: ``(C, C)`` or ``(C, C + 1)``.
        - Output: ``(C,)`` bool.
    """
    probs = F.softmax(logits.detach().to(_compute_dtype(logits)), dim=1)  # (C, C)
    classes = torch.arange(logits.shape[0], device=logits.device)  # (C,)
    correct = probs.argmax(dim=1) == classes  # (C,)
    return correct & (torch.diagonal(probs) > delta)  # (C,)
