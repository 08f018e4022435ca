"""Confusion-matrix maths shared by the segmentation and classification metrics.

Pure, stateless functions in torchmetrics' functional style
(``_validation -> _format -> _update -> compute``); the stateful classes in
:mod:`semantic_anchors.metrics` reuse them and only add a summed state.

Conventions used everywhere in :mod:`semantic_anchors.metrics`:

* Rows of a confusion matrix are ground-truth classes, columns predicted classes (as
  ``sklearn.metrics.confusion_matrix``); entries are ``int64`` counts.
* Every rate (IoU, accuracy) is a **percentage in [0, 100]**.
* A rate whose denominator is 0 (a class absent from ground truth and prediction for IoU, absent
  from ground truth for accuracy) is NaN, and NaN entries are left out of every mean.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

__all__ = [
    "accuracy_from_confusion",
    "confusion_matrix",
    "group_means",
    "iou_from_confusion",
    "overall_accuracy_from_confusion",
    "validate_groups",
]


def _float_dtype(device: torch.device) -> torch.dtype:
    """float64 for exact-enough ratios of large counts, except where the device has none."""
    return torch.float32 if device.type == "mps" else torch.float64


def _check_num_classes(num_classes: int) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes: expected an int >= 2, received {num_classes!r}")


def _confusion_matrix_arg_validation(num_classes: int, ignore_index: int | None = None) -> None:
    """Check the constructor-style arguments.

    Raises:
        ValueError: ``num_classes`` is not an int >= 2, or ``ignore_index`` is not None / an int
            outside ``[0, num_classes)``.
    """
    _check_num_classes(num_classes)
    if ignore_index is None:
        return
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise ValueError(f"ignore_index: expected an int or None, received {ignore_index!r}")
    if 0 <= ignore_index < num_classes:
        raise ValueError(
            f"ignore_index: expected a value outside the class range [0, {num_classes}) "
            f"(e.g. 255) or None, received {ignore_index}"
        )


def _is_integer(tensor: Tensor) -> bool:
    return not (tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool)


def _check_label_range(
    name: str, labels: Tensor, num_classes: int, valid: Tensor | None = None
) -> None:
    """Raise if a (valid) label lies outside ``[0, num_classes)``. Forces a device sync."""
    bad = (labels < 0) | (labels >= num_classes)  # same shape as labels
    if valid is not None:
        bad &= valid
    if bool(bad.any()):
        received = torch.unique(labels[bad])[:8].tolist()
        raise ValueError(
            f"{name}: expected class labels in [0, {num_classes}) or the ignore_index, "
            f"received values {received}"
        )


def _confusion_matrix_tensor_validation(
    preds: Tensor,
    target: Tensor,
    num_classes: int,
    ignore_index: int | None = None,
    check_values: bool = True,
) -> None:
    """Check ``preds`` (logits ``(B, C, *S)`` or labels ``(B, *S)``) against ``target`` ``(B, *S)``.

    Shape and dtype checks are always done; ``check_values`` adds the label-range and
    finiteness checks that force a device sync.

    Raises:
        ValueError: a non-tensor input, a float / bool ``target``, float label ``preds``,
            integer logits, a shape mismatch, a label out of range or non-finite logits.
    """
    for name, tensor in (("preds", preds), ("target", target)):
        if not isinstance(tensor, Tensor):
            raise ValueError(f"{name}: expected a torch.Tensor, received {type(tensor).__name__}")
    if not _is_integer(target):
        raise ValueError(
            f"target: expected an integer tensor of class labels, received dtype {target.dtype}"
        )
    shape = tuple(target.shape)
    logits_shape = (*shape[:1], num_classes, *shape[1:])
    if preds.ndim == target.ndim + 1:
        if not preds.is_floating_point():
            raise ValueError(
                f"preds: expected floating-point logits of shape {logits_shape}, "
                f"received dtype {preds.dtype}"
            )
        if tuple(preds.shape) != logits_shape:
            raise ValueError(
                f"preds: expected logits of shape {logits_shape} (target shape {shape}, "
                f"num_classes={num_classes}), received {tuple(preds.shape)}"
            )
    elif preds.ndim == target.ndim:
        if not _is_integer(preds):
            raise ValueError(
                f"preds: expected integer labels of shape {shape} or float logits of shape "
                f"{logits_shape}, received dtype {preds.dtype} with shape {tuple(preds.shape)}"
            )
        if tuple(preds.shape) != shape:
            raise ValueError(
                f"preds: expected labels of shape {shape} (the target shape), "
                f"received {tuple(preds.shape)}"
            )
    else:
        raise ValueError(
            f"preds: expected logits of shape {logits_shape} or labels of shape {shape}, "
            f"received {tuple(preds.shape)}"
        )
    if not check_values:
        return
    valid = None if ignore_index is None else target != ignore_index  # same shape as target
    _check_label_range("target", target, num_classes, valid)
    if preds.ndim == target.ndim:
        _check_label_range("preds", preds, num_classes, valid)
    elif not bool(torch.isfinite(preds).all()):
        raise ValueError("preds: expected finite logits, received NaN or inf values")


def _confusion_matrix_format(preds: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Logits to labels, then flatten both to ``(N,)`` int64."""
    if preds.ndim == target.ndim + 1:
        preds = preds.argmax(dim=1)  # (B, *S)
    return preds.reshape(-1).long(), target.reshape(-1).long()  # (N,), (N,)


def _confusion_matrix_update(
    preds: Tensor, target: Tensor, num_classes: int, ignore_index: int | None = None
) -> Tensor:
    """Count ``(target, pred)`` pairs of flat labels with one ``bincount``.

    Ignored pixels are sent to an overflow bin that is dropped, so no boolean indexing (and no
    copy of the valid pixels) is needed. ``bincount`` without weights is deterministic on CUDA.
    """
    overflow = num_classes * num_classes
    index = target * num_classes + preds  # (N,)
    if ignore_index is not None:
        index = torch.where(target == ignore_index, overflow, index)  # (N,)
    counts = torch.bincount(index, minlength=overflow + 1)  # (C * C + 1,)
    return counts[:overflow].reshape(num_classes, num_classes)  # (C, C)


def confusion_matrix(
    preds: Tensor,
    target: Tensor,
    num_classes: int,
    ignore_index: int | None = None,
    validate: bool = True,
) -> Tensor:
    """Confusion matrix of class predictions, pixels / samples equal to ``ignore_index`` left out.

    Args:
        preds: logits / scores ``(B, C, *S)`` (arg-maxed over dim 1) or labels ``(B, *S)``.
        target: integer labels ``(B, *S)``.
        num_classes: number of classes ``C`` (>= 2).
        ignore_index: target value to ignore (outside ``[0, C)``), or None.
        validate: check label ranges and finiteness (forces a device sync).

    Returns:
        ``(C, C)`` int64 counts; row = ground truth, column = prediction.

    Shape:
        - preds: ``(B, C, *S)`` or ``(B, *S)``; ``*S`` is ``()`` or ``(H, W)`` or any size.
        - target: ``(B, *S)``.
        - output: ``(C, C)``.

    Raises:
        ValueError: bad ``num_classes`` / ``ignore_index``, shape or dtype mismatch, or labels
            out of range.

    Example:
        >>> target = torch.tensor([[0, 1], [2, 255]])
        >>> preds = torch.tensor([[0, 2], [2, 0]])
        >>> confusion_matrix(preds, target, num_classes=3, ignore_index=255)
        tensor([[1, 0, 0],
                [0, 0, 1],
                [0, 0, 1]])
    """
    _confusion_matrix_arg_validation(num_classes, ignore_index)
    _confusion_matrix_tensor_validation(preds, target, num_classes, ignore_index, validate)
    preds, target = _confusion_matrix_format(preds, target)
    return _confusion_matrix_update(preds, target, num_classes, ignore_index)


def _check_confmat(confmat: Tensor) -> None:
    if not isinstance(confmat, Tensor) or confmat.ndim != 2 or confmat.shape[0] != confmat.shape[1]:
        received = tuple(confmat.shape) if isinstance(confmat, Tensor) else type(confmat).__name__
        raise ValueError(f"confmat: expected a square (C, C) tensor, received {received}")


def iou_from_confusion(confmat: Tensor) -> Tensor:
    """Per-class intersection over union in percent.

    ``IoU_c = 100 * TP_c / (TP_c + FP_c + FN_c)``; NaN for a class absent from both ground truth
    and prediction (0 / 0).

    Shape:
        - confmat: ``(C, C)``, rows = ground truth.
        - output: ``(C,)`` float64 (float32 on MPS).

    Raises:
        ValueError: ``confmat`` is not a square matrix.

    Example:
        >>> iou_from_confusion(torch.tensor([[3, 1, 0], [0, 4, 0], [0, 0, 0]]))
        tensor([75., 80., nan], dtype=torch.float64)
    """
    _check_confmat(confmat)
    cm = confmat.to(_float_dtype(confmat.device))  # (C, C)
    tp = cm.diagonal()  # (C,)
    union = cm.sum(0) + cm.sum(1) - tp  # (C,)
    return 100.0 * tp / union  # (C,) 0 / 0 -> NaN


def accuracy_from_confusion(confmat: Tensor) -> Tensor:
    """Per-class accuracy (recall) in percent: ``100 * TP_c / (TP_c + FN_c)``.

    NaN for a class absent from the ground truth.

    Shape:
        - confmat: ``(C, C)``, rows = ground truth.
        - output: ``(C,)`` float64 (float32 on MPS).

    Raises:
        ValueError: ``confmat`` is not a square matrix.

    Example:
        >>> accuracy_from_confusion(torch.tensor([[3, 1, 0], [0, 4, 0], [0, 2, 0]]))
        tensor([ 75., 100.,   0.], dtype=torch.float64)
    """
    _check_confmat(confmat)
    cm = confmat.to(_float_dtype(confmat.device))  # (C, C)
    return 100.0 * cm.diagonal() / cm.sum(1)  # (C,)


def overall_accuracy_from_confusion(confmat: Tensor) -> Tensor:
    """Overall accuracy (pixel accuracy ``aAcc`` / top-1) in percent; NaN for an empty matrix.

    Shape:
        - confmat: ``(C, C)``.
        - output: ``()``.

    Raises:
        ValueError: ``confmat`` is not a square matrix.

    Example:
        >>> overall_accuracy_from_confusion(torch.tensor([[3, 1], [0, 4]]))
        tensor(87.5000, dtype=torch.float64)
    """
    _check_confmat(confmat)
    cm = confmat.to(_float_dtype(confmat.device))  # (C, C)
    return 100.0 * cm.diagonal().sum() / cm.sum()  # ()


def validate_groups(
    groups: Mapping[str, Sequence[int] | Tensor] | None, num_classes: int
) -> dict[str, tuple[int, ...]]:
    """Normalise a class-group mapping such as ``{"head": [...], "body": [...], "tail": [...]}``.

    Any group names are allowed; an empty group is allowed (its mean is NaN), e.g. the body of a
    2-class split.

    Returns:
        ``{name: sorted unique class indices}``; ``{}`` for None.

    Raises:
        ValueError: ``groups`` is not a mapping of non-empty string names to integer sequences,
            or an index lies outside ``[0, num_classes)``.

    Example:
        >>> validate_groups({"head": [0, 1], "tail": torch.tensor([3])}, num_classes=4)
        {'head': (0, 1), 'tail': (3,)}
    """
    _check_num_classes(num_classes)
    if groups is None:
        return {}
    if not isinstance(groups, Mapping):
        raise ValueError(
            "groups: expected a mapping such as {'head': [...], 'body': [...], 'tail': [...]}, "
            f"received {type(groups).__name__}"
        )
    normalised: dict[str, tuple[int, ...]] = {}
    for name, indices in groups.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"groups: expected non-empty string names, received {name!r}")
        if isinstance(indices, Tensor):
            if indices.ndim > 1 or (indices.numel() and not _is_integer(indices)):
                raise ValueError(
                    f"groups[{name!r}]: expected a 1-D integer tensor of class indices, "
                    f"received dtype {indices.dtype} with shape {tuple(indices.shape)}"
                )
            indices = indices.reshape(-1).tolist()
        if isinstance(indices, (str, bytes)) or not isinstance(indices, Sequence):
            raise ValueError(
                f"groups[{name!r}]: expected a sequence of class indices, "
                f"received {type(indices).__name__}"
            )
        bad = [i for i in indices if isinstance(i, bool) or not isinstance(i, int)]
        bad += [i for i in indices if isinstance(i, int) and not 0 <= i < num_classes]
        if bad:
            raise ValueError(
                f"groups[{name!r}]: expected class indices (ints) in [0, {num_classes}), "
                f"received {bad[:8]}"
            )
        normalised[name] = tuple(sorted(set(indices)))
    return normalised


def group_means(values: Tensor, groups: Mapping[str, Sequence[int]]) -> dict[str, Tensor]:
    """NaN-ignoring mean of per-class ``values`` over each group's classes.

    A group whose values are all NaN (or an empty group) gives NaN.

    Shape:
        - values: ``(C,)``.
        - output values: ``()`` each.

    Example:
        >>> values = torch.tensor([80.0, 60.0, float("nan"), 10.0])
        >>> group_means(values, {"head": [0, 1], "tail": [2, 3]})
        {'head': tensor(70.), 'tail': tensor(10.)}
    """
    out: dict[str, Tensor] = {}
    for name, indices in groups.items():
        index = torch.as_tensor(list(indices), dtype=torch.long, device=values.device)  # (G,)
        out[name] = torch.nanmean(values[index])  # () NaN when empty / all NaN
    return out
