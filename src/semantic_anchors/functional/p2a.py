"""Pixel-to-anchor maths: nearest label resizing and the memory-lean MSE of paper Eq. 4."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

__all__ = ["resize_labels", "pixel_to_anchor_loss"]

# Elements of one chunk's float32 temporaries (4 MiB): bounds the extra memory of the loss
# independently of batch size, resolution and number of classes.
_CHUNK_ELEMENTS = 1 << 20


def resize_labels(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize dense labels to ``size`` with nearest interpolation, as the authors' code does.

    Equivalent to ``F.interpolate(labels[:, None].float(), size, mode="nearest")``; a no-op when
    the labels already have that size.

    Shape:
        - labels: ``(B, H, W)`` integer.
        - Output: ``(B, h, w)`` int64.

    Raises:
        ValueError: ``labels`` is not ``(B, H, W)`` with ``H, W >= 1``, or ``size`` is not
            two ints ``>= 1`` (a 0-sized feature map), instead of an error deep inside
            ``F.interpolate``.
    """
    if not isinstance(labels, torch.Tensor) or labels.dim() != 3 or 0 in labels.shape[1:]:
        shape = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"`labels` must be a (B, H, W) tensor with H, W >= 1, got shape {shape}")
    size_ok = (
        isinstance(size, (tuple, list, torch.Size))
        and len(size) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in size)
    )
    if not size_ok:
        raise ValueError(
            f"`size` must be the feature map's (h, w), two ints >= 1, got {size!r} (features with "
            "a 0-sized spatial dimension cannot be matched to labels)"
        )
    if tuple(labels.shape[-2:]) == tuple(size):
        return labels.long()
    resized = F.interpolate(labels[:, None].float(), size=size, mode="nearest")  # (B, 1, h, w)
    return resized[:, 0].long()  # (B, h, w)


def _chunks(features: torch.Tensor) -> list[tuple[slice, slice]]:
    """``(images, rows)`` blocks of at most ``_CHUNK_ELEMENTS`` feature values.

    Whole images are grouped while they fit (few, large ops); a larger image is cut into rows.
    """
    batch, dim, height, width = features.shape
    per_image = dim * height * width
    if per_image <= _CHUNK_ELEMENTS:
        step = _CHUNK_ELEMENTS // per_image
        rows = slice(0, height)
        return [(slice(b, min(b + step, batch)), rows) for b in range(0, batch, step)]
    step = max(1, _CHUNK_ELEMENTS // max(dim * width, 1))
    return [
        (slice(b, b + 1), slice(r, min(r + step, height)))
        for b in range(batch)
        for r in range(0, height, step)
    ]


def _gather(anchors_t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``A[y]`` laid out like the features: ``(D, C)`` and ``(b, r, w)`` labels give ``(b, D, r, w)``."""
    picked = torch.index_select(anchors_t, 1, labels.reshape(-1))  # (D, b*r*w) contiguous
    return picked.view(anchors_t.shape[0], *labels.shape).transpose(0, 1)  # (b, D, r, w) view


class _PixelToAnchorMSE(torch.autograd.Function):
    """Sum over weighted pixels of ``sum_D (f - A[y])^2``, in bounded-size chunks.

    Never materialises a one-hot ``(B, C, h, w)`` tensor nor a full ``(B, D, h, w)`` anchor map;
    the backward writes ``2 (f - A[y]) w`` straight into the gradient buffer chunk by chunk.
    """

    @staticmethod
    def forward(ctx, features, labels, weights, anchors):  # noqa: D102
        # features (B, D, h, w) any float dtype; labels (B, h, w) long in [0, C); weights (B, h, w)
        # (D, C) in at least float32: gathers come out channel-major, like the features.
        compute_dtype = torch.promote_types(features.dtype, torch.float32)
        anchors_t = anchors.t().to(compute_dtype).contiguous()
        ctx.save_for_backward(features, labels, weights, anchors_t)
        total = features.new_zeros((), dtype=compute_dtype)
        for images, rows in _chunks(features):
            diff = _gather(anchors_t, labels[images, rows])  # (b, D, r, w) the only temporary
            diff.sub_(features[images, :, rows])  # (b, D, r, w) a - f
            sq = diff.square_().sum(dim=1)  # (b, r, w)
            total = total + (sq * weights[images, rows]).sum()
        return total

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):  # noqa: D102
        features, labels, weights, anchors_t = ctx.saved_tensors
        grad_features = None
        if ctx.needs_input_grad[0]:
            grad_features = torch.empty_like(features)  # (B, D, h, w)
            for images, rows in _chunks(features):
                scale = (-2.0 * grad_output) * weights[images, None, rows]  # (b, 1, r, w)
                diff = _gather(anchors_t, labels[images, rows])  # (b, D, r, w)
                diff.sub_(features[images, :, rows])  # (b, D, r, w) a - f
                grad_features[images, :, rows] = diff.mul_(scale)  # 2 w (f - a)
        return grad_features, None, None, None


def pixel_to_anchor_loss(
    features: torch.Tensor,
    labels: torch.Tensor,
    anchors: torch.Tensor,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean over valid pixels of the mean over channels of ``(f - A[y])^2`` (paper Eq. 4).

    The anchors receive no gradient (they are targets); the features do. The loss is computed in
    float32 for float32 and lower-precision (bf16 / fp16) features, in float64 for float64
    features, and is exactly ``0`` (finite, with a zero gradient) when no
    pixel is valid.

    Args:
        features: dense ``(B, D, h, w)`` or vector ``(B, D)`` features.
        labels: ``(B, h, w)`` or ``(B,)`` class indices already at the feature resolution; entries
            outside ``valid`` may hold anything (they are replaced by 0 before indexing).
        anchors: ``(C, D)`` targets, one per class.
        valid: optional boolean mask shaped like ``labels``; all pixels when ``None``.

    Returns:
        A scalar tensor (float32, or float64 for float64 features).

    Shape:
        - features: ``(B, D, h, w)`` or ``(B, D)``.
        - labels, valid: ``(B, h, w)`` or ``(B,)``.
        - anchors: ``(C, D)``.
        - Output: ``()``.

    Example:
        >>> f = torch.zeros(2, 3, 4, 4, requires_grad=True)
        >>> y = torch.zeros(2, 4, 4, dtype=torch.long)
        >>> pixel_to_anchor_loss(f, y, torch.ones(1, 3)).item()
        1.0
    """
    if features.dim() == 2:
        features = features[:, :, None, None]  # (B, D, 1, 1)
        labels = labels[:, None, None]  # (B, 1, 1)
        valid = None if valid is None else valid[:, None, None]
    if valid is None:
        valid = torch.ones_like(labels, dtype=torch.bool)
    safe_labels = torch.where(valid, labels, torch.zeros_like(labels)).long()  # (B, h, w)
    count = valid.sum()
    compute_dtype = torch.promote_types(features.dtype, torch.float32)
    # 1 / (D * N_valid) per valid pixel; 0 elsewhere and when nothing is valid.
    weights = valid.to(compute_dtype) / (count.clamp(min=1) * features.shape[1])  # (B, h, w)
    return _PixelToAnchorMSE.apply(features, safe_labels, weights, anchors.detach())
