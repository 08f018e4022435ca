"""``semantic-anchors convert-official``: a checkpoint of the SAR authors' code as a run folder.

The authors' code (an mmsegmentation fork) saves its segmentor in mmseg's layout: ``backbone.*``,
``decode_head.*`` (``decode_head.0.*`` / ``decode_head.1.*`` for OCRNet's cascade) and
``auxiliary_head.*`` where a config has one, plus the SAR module's own state at the top level:

=========================  ===============================================================
official key               here
=========================  ===============================================================
``random_center``          ``regularizer.anchors`` (the pre-defined anchors ``A``)
``projecter_linear.*``     ``regularizer.embedding.linear.*`` (two Linear-BN-ReLU)
``projecter.conv.*``       ``regularizer.embedding.conv.0.*`` (1x1 conv, no bias)
``projecter.bn.*``         ``regularizer.embedding.conv.1.*``
``momentum_center_feat``   ``regularizer.semantic_anchors`` (the EMA ``A_hat``)
``update_flag``            ``regularizer.initialized`` (one flag for all classes there)
``local_iter``             the step of the converted run
``center_lbl``             dropped (``arange(C)``)
=========================  ===============================================================

The model's keys are the same as mmseg's (our HRNet / heads are ported with mmseg's names), so
they only gain the ``model.`` prefix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from semantic_anchors.models.io import read_state_dict
from semantic_anchors.train.config import dump_config, load_config

__all__ = ["convert_official", "map_official_state"]

_SAR_RENAMES = (
    ("projecter_linear.", "regularizer.embedding.linear."),
    ("projecter.conv.", "regularizer.embedding.conv.0."),
    ("projecter.bn.", "regularizer.embedding.conv.1."),
)
_MODEL_PREFIXES = ("backbone.", "decode_head.", "auxiliary_head.")
_DROPPED = ("center_lbl", "local_iter")


def map_official_state(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], int]:
    """Rename an official SAR segmentor's state dict to this project's module keys.

    Returns:
        ``(state, step)``: the renamed state (``model.*``, ``regularizer.*``) and ``local_iter``.

    Raises:
        ValueError: a key that belongs to neither the segmentor nor SAR (listed).
    """
    out: dict[str, torch.Tensor] = {}
    unknown = []
    step = int(state["local_iter"].reshape(-1)[0]) if "local_iter" in state else 0
    for key, value in state.items():
        if key.startswith(_MODEL_PREFIXES):
            out[f"model.{key}"] = value
        elif key == "random_center":
            out["regularizer.anchors"] = value
        elif key == "momentum_center_feat":
            out["regularizer.semantic_anchors"] = value
        elif key == "update_flag":
            num_classes = state["random_center"].shape[0] if "random_center" in state else 1
            out["regularizer.initialized"] = value.bool().reshape(()).expand(num_classes).clone()
        elif key in _DROPPED:
            continue
        else:
            for old, new in _SAR_RENAMES:
                if key.startswith(old):
                    out[new + key[len(old) :]] = value
                    break
            else:
                unknown.append(key)
    if unknown:
        raise ValueError(
            f"keys that are neither mmseg segmentor keys ({', '.join(_MODEL_PREFIXES)}) nor the "
            f"official SAR module's: {unknown[:10]}"
        )
    return out, step


def convert_official(
    checkpoint: str | Path,
    recipe: str | Path,
    out_dir: str | Path,
    overrides: list[str] | None = None,
) -> Path:
    """Write a run folder (``config.yaml``, ``checkpoints/last.ckpt``) from an official checkpoint.

    The recipe gives the model, data and evaluation settings (e.g. ``cityscapes-fcn-hr48``); the
    dataset must be present (its class names and frequencies go into the run, as for a trained
    one). ``semantic-anchors eval OUT`` then evaluates it; ``export`` writes its plain model.

    Raises:
        FileNotFoundError: the checkpoint, recipe or data root is missing.
        FileExistsError: ``out_dir`` already holds something.
        ValueError: the checkpoint does not fit the recipe's model and regularizer (the message
            lists missing and unexpected keys).
    """
    from semantic_anchors.train.data import AnchorDataModule
    from semantic_anchors.train.module import AnchorModule

    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} is not empty; choose another --out")
    config = load_config(recipe, overrides)
    state, step = map_official_state(read_state_dict(checkpoint, name="checkpoint"))
    if config["regularizer"]["name"] != "sar":
        state = {k: v for k, v in state.items() if not k.startswith("regularizer.")}
    dm = AnchorDataModule(config["data"], int(config["seed"]))
    info = dm.info()
    model_options = dict(config["model"])
    model_options.pop("pretrained", None)  # the weights come from the checkpoint
    config["model"] = model_options
    module = AnchorModule(config, info)
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{checkpoint} does not fit recipe {recipe!r} (model {config['model']['name']!r}): "
            f"missing {missing[:8]}, unexpected {unexpected[:8]}"
        )
    ckpt: dict[str, Any] = {
        "state_dict": module.state_dict(),
        "global_step": step,
        "semantic_anchors": {
            "config": config, "data_info": info, "last_val": None,
            "converted_from": str(Path(checkpoint).resolve()),
        },
    }  # fmt: skip
    (out_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    dump_config(config, out_dir / "config.yaml")
    from semantic_anchors.train.checkpoint import AtomicCheckpointIO

    AtomicCheckpointIO().save_checkpoint(ckpt, out_dir / "checkpoints" / "last.ckpt")
    return out_dir
