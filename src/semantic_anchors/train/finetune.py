"""Stage-2 hand-over: start from a finished run's whole model and train only some parameters.

Two-stage long-tail methods (DisAlign, MiSLAS, cRT, ...) learn the representation in stage 1 and
then re-balance a small part of the model in stage 2 with everything else frozen. The config's
``finetune`` section says how (every key defaults to ``None``: off):

* ``init_from``: a run folder (or a ``.ckpt`` of one): the ``model.*`` weights of its
  ``checkpoints/last.ckpt`` are loaded into the whole model (backbone, heads, classifier; not the
  regularizer's state), strictly: every key present and of the same shape. Loaded once, when a
  run starts; a resumed run continues from its own checkpoint.
* ``train_only``: parameter-name prefixes of the training module (``model.fc``,
  ``calibration``, ``regularizer``, ...); every other parameter gets ``requires_grad=False``.
* ``freeze_bn``: with ``train_only``, the BatchNorm layers outside it stay in eval mode, so their
  running statistics do not move (default ``True``); ``False`` keeps them in train mode: they
  normalise with batch statistics and update their running mean / variance while their affine
  parameters stay frozen (MiSLAS' shift learning on BN).
* ``calibration`` / ``calibration_options`` / ``calibration_lr_mult``: a logit calibration
  (:mod:`semantic_anchors.calibration`) under the module's ``calibration`` attribute, trained at
  ``optimizer.lr * calibration_lr_mult``.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from semantic_anchors.models.io import read_state_dict

__all__ = [
    "apply_train_only",
    "check_batch_options",
    "config_calibration",
    "freeze_for_stage2",
    "frozen_batchnorm_names",
    "load_init_from",
    "matches_prefix",
]

_OPTIONAL_SUFFIXES = (".num_batches_tracked",)
_LISTED = 8


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_LISTED])
    return f"{shown}, ... ({len(items)} in all)" if len(items) > _LISTED else shown


def matches_prefix(name: str, prefixes: list[str]) -> bool:
    """Whether ``name`` is one of ``prefixes`` or lies under one (``model.fc`` covers
    ``model.fc.weight``, not ``model.fc2.weight``; a trailing ``.`` is optional)."""
    for prefix in prefixes:
        prefix = prefix.rstrip(".")
        if name == prefix or name.startswith(prefix + "."):
            return True
    return False


def load_init_from(module: nn.Module, path: str | Path) -> None:
    """Load the model weights of a run folder (``finetune.init_from``) into ``module.model``.

    Raises:
        FileNotFoundError: ``path`` is neither a checkpoint nor a run folder with
            ``checkpoints/last.ckpt``.
        ValueError: an unreadable checkpoint, or keys missing / unexpected / of another shape
            (listed); every message starts with ``finetune.init_from``.
    """
    key = "finetune.init_from"
    folder = Path(path)
    if not folder.is_file() and not (folder / "checkpoints" / "last.ckpt").is_file():
        what = "is not a run folder with checkpoints/last.ckpt" if folder.is_dir() else "not found"
        raise FileNotFoundError(
            f"{key}: {str(path)!r} {what}; train stage 1 first (semantic-anchors train RECIPE "
            f"--out {path}) or pass --set {key}=RUN"
        )
    state = read_state_dict(path, name=key)
    own = module.model.state_dict()
    missing = [k for k in own if k not in state and not k.endswith(_OPTIONAL_SUFFIXES)]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and v.shape != own[k].shape
    ]
    if missing or unexpected or mismatched:
        parts = [f"{key}: the model of {str(path)!r} does not fit this run's model"]
        for label, items in (("missing", missing), ("unexpected", unexpected),
                             ("shape mismatches", mismatched)):  # fmt: skip
            if items:
                parts.append(f"{label}: {_listing(items)}")
        raise ValueError("; ".join(parts) + " (the same model.* settings as stage 1 are needed)")
    module.model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)


def apply_train_only(module: nn.Module, prefixes: list[str] | None) -> list[str]:
    """Freeze every parameter of ``module`` outside ``prefixes`` (``finetune.train_only``).

    Returns:
        The names of the parameters left trainable (all of them when ``prefixes`` is ``None``).

    Raises:
        ValueError: a prefix that matches no parameter (the message lists the top-level names),
            or no trainable parameter at all.
    """
    names = [name for name, _ in module.named_parameters()]
    if prefixes is None:
        return names
    for prefix in prefixes:
        if not any(matches_prefix(name, [prefix]) for name in names):
            tops = sorted({".".join(name.split(".")[:2]) for name in names})
            raise ValueError(
                f"finetune.train_only: {prefix!r} matches no parameter of this run; its "
                f"parameters start with {_listing(tops)}"
            )
    trainable = []
    for name, param in module.named_parameters():
        keep = matches_prefix(name, prefixes)
        param.requires_grad_(keep)
        if keep:
            trainable.append(name)
    return trainable


def frozen_batchnorm_names(module: nn.Module, prefixes: list[str] | None) -> list[str]:
    """Names of the BatchNorm layers of ``module`` outside ``prefixes`` (empty without them)."""
    if prefixes is None:
        return []
    return [
        name
        for name, sub in module.named_modules()
        if isinstance(sub, nn.modules.batchnorm._BatchNorm) and not matches_prefix(name, prefixes)
    ]


def config_calibration(config: dict, model: nn.Module) -> nn.Module | None:
    """The calibration of ``finetune.calibration`` for ``model`` (``None`` without one).

    Raises:
        ValueError: an unknown option (named under ``finetune.calibration_options``), or a
            calibration together with ``eval.anchor_fusion``.
    """
    from semantic_anchors.calibration import build_calibration

    ft = config.get("finetune") or {}
    name = ft.get("calibration")
    if name is None:
        return None
    if config["eval"].get("anchor_fusion"):
        beta = config["eval"]["anchor_fusion"]
        raise ValueError(
            f"finetune.calibration={name!r} and eval.anchor_fusion={beta} do not combine (the "
            "fused logits would bypass the calibration); set one of them off"
        )
    options = ft.get("calibration_options") or {}
    try:
        return build_calibration(
            name, model.num_classes, model.feat_dim, dense=bool(model.dense), **options
        )
    except (TypeError, ValueError) as err:
        raise ValueError(f"finetune.calibration_options: {err}") from None


def freeze_for_stage2(module: nn.Module, config: dict) -> list[str]:
    """Apply ``finetune.train_only`` to ``module``; returns the BN layer names that stay in eval
    mode (``finetune.freeze_bn``, default on with ``train_only``)."""
    ft = config.get("finetune") or {}
    prefixes = ft.get("train_only")
    apply_train_only(module, prefixes)
    if ft.get("freeze_bn") is False:
        return []
    return frozen_batchnorm_names(module, prefixes)


def check_batch_options(config: dict, task: str) -> None:
    """``data.mixup_alpha`` and ``data.sampler=class-balanced`` are classification-only.

    Raises:
        ValueError: naming the key, for a segmentation dataset.
    """
    data = config["data"]
    if task == "classification":
        return
    if data.get("mixup_alpha"):
        raise ValueError(
            f"data.mixup_alpha={data['mixup_alpha']} applies to classification only; dataset "
            f"{data['name']!r} is a {task} dataset"
        )
    if data.get("sampler") is not None:
        raise ValueError(
            f"data.sampler={data['sampler']!r} applies to classification only (it balances "
            f"image labels); dataset {data['name']!r} is a {task} dataset"
        )
