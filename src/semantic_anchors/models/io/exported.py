"""Exported models: the plain trained network, without any regularizer state, in one file.

``semantic-anchors export RUN --out model.pt`` writes a file that :func:`load_exported` turns
back into the model (in eval mode) with nothing but this package and torch: SAR costs nothing at
inference, so the file holds the model's own weights only (no anchors, no embedding, no EMA).

``--with-anchors`` adds one tiny extra, SAR's ``(C, D)`` semantic anchors, under the key
``"semantic_anchors"``; ``load_exported(path, anchor_fusion=beta)`` then returns the
anchor-aware model (:class:`~semantic_anchors.anchor_inference.AnchorFusedModel`). A file
without it is exactly the plain export.

``semantic-anchors export`` also stores the run's inference settings (preprocessing and eval mode,
:mod:`semantic_anchors.train.inference_settings`) under ``"inference"``, a plain dict that
``semantic-anchors predict`` reads; :func:`load_exported` puts it on the model as ``inference``
(``None`` in a file written without it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..registry import create_model

__all__ = ["EXPORT_FORMAT", "load_exported", "save_exported"]

EXPORT_FORMAT = "semantic-anchors-model/1"


def save_exported(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    name: str,
    options: dict[str, Any],
    num_classes: int,
    class_names: list[str] | None = None,
    semantic_anchors: torch.Tensor | None = None,
    inference: dict[str, Any] | None = None,
) -> Path:
    """Write ``model``'s weights and how to rebuild it (registry name and options) to ``path``.

    Args:
        model: a registered model (``create_model(name, num_classes, **options)`` rebuilds it).
        path: the output file (written atomically).
        name: its registry name.
        options: the ``create_model`` keyword arguments it was built with (``pretrained`` is
            dropped: the weights are in the file).
        num_classes: classes of its classifier.
        class_names: optional, stored for the user.
        semantic_anchors: optional ``(num_classes, D)`` trained semantic anchors, stored for
            anchor-aware inference; without them the file holds no such key.
        inference: optional plain dict (str, numbers, lists, None) of how to use the model on
            new images, stored under ``"inference"``.
    """
    path = Path(path)
    options = {k: v for k, v in options.items() if k != "pretrained"}
    payload = {
        "format": EXPORT_FORMAT, "model": name, "options": options, "num_classes": num_classes,
        "class_names": list(class_names) if class_names is not None else None,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }  # fmt: skip
    if semantic_anchors is not None:
        if semantic_anchors.dim() != 2 or semantic_anchors.shape[0] != num_classes:
            raise ValueError(
                f"semantic_anchors: expected a ({num_classes}, D) tensor, "
                f"got shape {tuple(semantic_anchors.shape)}"
            )
        payload["semantic_anchors"] = semantic_anchors.detach().cpu().clone()
    if inference is not None:
        payload["inference"] = inference
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_exported(
    path: str | os.PathLike[str],
    *,
    anchor_fusion: float | None = None,
    anchor_metric: str = "l2",
    anchor_temperature: float | None = None,
) -> nn.Module:
    """Rebuild an exported model (eval mode) from ``path``; loads with ``weights_only=True``.

    Args:
        path: the exported file.
        anchor_fusion: None (default) for the plain model; a ``beta >= 0`` for the anchor-aware
            :class:`~semantic_anchors.anchor_inference.AnchorFusedModel` of the model and the
            file's semantic anchors (exported with ``--with-anchors``).
        anchor_metric: ``"l2"`` or ``"cosine"``, with ``anchor_fusion``.
        anchor_temperature: the anchor logits' temperature (None: the metric's default).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not an exported model, its weights do not fit the model, or
            ``anchor_fusion`` is given for a file without semantic anchors.

    Example:
        >>> import tempfile, torch
        >>> from semantic_anchors.models import create_model
        >>> from semantic_anchors.models.io import load_exported, save_exported
        >>> model = create_model("small_cnn", num_classes=3, in_channels=1).eval()
        >>> file = save_exported(model, tempfile.mkdtemp() + "/m.pt", name="small_cnn",
        ...                      options={"in_channels": 1}, num_classes=3)
        >>> x = torch.randn(2, 1, 28, 28)
        >>> torch.equal(load_exported(file)(x), model(x))
        True
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no exported model at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure: name the file
        raise ValueError(f"{path} is not a readable exported model: {err}") from err
    if not isinstance(payload, dict) or payload.get("format") != EXPORT_FORMAT:
        raise ValueError(
            f"{path} is not an exported semantic-anchors model (format {EXPORT_FORMAT!r}); "
            "write one with `semantic-anchors export RUN --out FILE`"
        )
    model = create_model(payload["model"], num_classes=payload["num_classes"], **payload["options"])
    missing, unexpected = model.load_state_dict(payload["state_dict"], strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{path} does not fit model {payload['model']!r}: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    model.class_names = payload.get("class_names")
    model.inference = payload.get("inference")
    model.eval()
    if anchor_fusion is None:
        return model
    anchors = payload.get("semantic_anchors")
    if anchors is None:
        raise ValueError(
            f"anchor_fusion={anchor_fusion}: {path} holds no semantic anchors; export it with "
            "`semantic-anchors export RUN --out FILE --with-anchors`"
        )
    from semantic_anchors.anchor_inference import AnchorFusedModel

    return AnchorFusedModel(
        model, anchors, beta=anchor_fusion, metric=anchor_metric, temperature=anchor_temperature
    ).eval()
