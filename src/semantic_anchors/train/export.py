"""``semantic-anchors export``: a run's trained model as a plain file, without SAR's state.

Two formats: ``torch`` (default; :func:`~semantic_anchors.models.io.load_exported` rebuilds the
model) and ``onnx`` (:func:`~semantic_anchors.models.io.onnx.export_onnx`, run by onnxruntime).
Both hold the run's inference settings (:mod:`semantic_anchors.train.inference_settings`), so
``semantic-anchors predict`` needs nothing but the file.
"""

from __future__ import annotations

import sys
from pathlib import Path

from semantic_anchors.models.io import save_exported
from semantic_anchors.train.checkpoint import describe_skipped, load_checkpoint, newest_readable
from semantic_anchors.train.config import load_config
from semantic_anchors.train.inference_settings import inference_settings

__all__ = ["FORMATS", "export_run"]

FORMATS = ("torch", "onnx")


def export_run(
    path: str | Path,
    out: str | Path,
    *,
    best: bool = False,
    with_anchors: bool = False,
    format: str = "torch",
) -> Path:
    """Export the model of a run folder (its ``last.ckpt``, or ``best.ckpt``) or a checkpoint.

    Only the ``model.*`` weights are kept: the regularizer (anchors, embedding, EMA) is a
    training-time module and the exported network computes exactly the trained model's logits.
    ``with_anchors`` also stores SAR's semantic anchors (a ``(C, D)`` tensor), for anchor-aware
    inference with ``load_exported(out, anchor_fusion=beta)``. ``format="onnx"`` writes the
    plain model's inference forward as an ONNX graph (a run evaluated with
    ``eval.anchor_fusion`` is exported without the fusion, with a note on stderr).

    Raises:
        FileNotFoundError: no checkpoint.
        ValueError: not a checkpoint of this project; a run with a trained logit calibration
            (``finetune.calibration``, which the plain model would drop); with ``with_anchors``, a run without SAR
            or whose semantic anchors were never initialized for some classes (named), or the
            ONNX format; an unknown ``format``; a model that cannot be exported to ONNX.
        ModuleNotFoundError: ``format="onnx"`` without the ``onnx`` extra.
    """
    if format not in FORMATS:
        raise ValueError(f"format: expected one of {list(FORMATS)}, got {format!r}")
    if with_anchors and format != "torch":
        raise ValueError("--with-anchors: the semantic anchors are stored by --format torch only")
    path = Path(path)
    if path.is_dir() and not best:  # the newest readable one (a damaged newer one is named)
        ckpt_file, ckpt, skipped = newest_readable(path / "checkpoints")
        if skipped:
            print(f"export {path}: {describe_skipped(skipped, ckpt_file)}", file=sys.stderr)
    else:
        ckpt_file = path / "checkpoints" / "best.ckpt" if path.is_dir() else path
        ckpt = load_checkpoint(ckpt_file)
    extra = ckpt["semantic_anchors"]
    config = load_config(extra["config"])
    calibration = config["finetune"].get("calibration")
    if calibration is not None:
        raise ValueError(
            f"{ckpt_file}: the run's logits go through a trained {calibration!r} calibration "
            "(finetune.calibration), which an exported plain model would drop; evaluate it with "
            "`semantic-anchors eval` instead"
        )
    options = {k: v for k, v in config["model"].items() if k != "name"}
    options.setdefault("in_channels", extra["data_info"]["in_channels"])
    prefix = "model."
    state = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}

    from semantic_anchors.models import create_model

    model = create_model(
        config["model"]["name"], num_classes=extra["data_info"]["num_classes"],
        **{k: v for k, v in options.items() if k != "pretrained"},
    )  # fmt: skip
    model.load_state_dict(state, strict=True)
    settings = inference_settings(config, extra["data_info"])
    if format == "onnx":
        return _export_onnx(model, out, config, settings, ckpt_file)
    anchors = _semantic_anchors(ckpt, config, ckpt_file) if with_anchors else None
    return save_exported(
        model, out, name=config["model"]["name"], options=options,
        num_classes=extra["data_info"]["num_classes"], class_names=extra["data_info"]["class_names"],
        semantic_anchors=anchors, inference=settings,
    )  # fmt: skip


def _export_onnx(model, out, config: dict, settings: dict, ckpt_file: Path) -> Path:
    from semantic_anchors.models.io.onnx import TRACE_SIZE, export_onnx

    if config["eval"].get("anchor_fusion"):
        print(
            f"export {ckpt_file}: the ONNX graph is the plain model; the run's evaluation adds "
            f"eval.anchor_fusion={config['eval']['anchor_fusion']} (anchor-aware inference), "
            "which predict then leaves out",
            file=sys.stderr,
        )
    crop = settings["transforms"].get("crop_size")  # a classifier evaluated at one size
    sample = (crop, crop) if isinstance(crop, int) else tuple(crop) if crop else TRACE_SIZE
    metadata = {"model": config["model"]["name"], **settings}
    return export_onnx(
        model, out, in_channels=settings["in_channels"], metadata=metadata,
        name=config["model"]["name"], sample_size=sample,
    )  # fmt: skip


def _semantic_anchors(ckpt: dict, config: dict, ckpt_file: Path):
    """SAR's ``(C, D)`` semantic anchors from a checkpoint, every class initialized."""
    from semantic_anchors.anchor_inference import check_anchors_initialized
    from semantic_anchors.regularizers.registry import REGULARIZERS
    from semantic_anchors.regularizers.sar import SemanticAnchorRegularizer

    state = ckpt["state_dict"]
    keys = ("regularizer.semantic_anchors", "regularizer.initialized")
    name = str(config["regularizer"]["name"]).lower().replace("_", "-")
    is_sar = REGULARIZERS.get(name) is SemanticAnchorRegularizer
    if not is_sar or any(k not in state for k in keys):
        raise ValueError(
            f"--with-anchors: {ckpt_file} was trained with regularizer "
            f"{config['regularizer']['name']!r}, which has no semantic anchors (needs 'sar')"
        )
    class_names = ckpt["semantic_anchors"]["data_info"].get("class_names")
    try:
        check_anchors_initialized(state[keys[1]], class_names)
    except ValueError as err:
        raise ValueError(f"--with-anchors: {ckpt_file}: {err}") from None
    return state[keys[0]]
