"""Loading local checkpoints (torchvision / mmcv format) into the models.

Nothing is downloaded: ``pretrained`` is always a path to a file on disk, read with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

__all__ = ["load_pretrained", "read_state_dict"]

# Checkpoints written before torch 0.4.1 (e.g. the first torchvision ResNets) have no
# BatchNorm ``num_batches_tracked`` buffer; its absence is harmless.
_OPTIONAL_SUFFIXES = (".num_batches_tracked",)
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict")
_LISTED = 10


def read_state_dict(path: str | os.PathLike[str], *, name: str = "pretrained") -> dict[str, Tensor]:
    """Reads a state dict from a local file.

    Accepts a bare state dict, or a dict holding one under ``"state_dict"`` / ``"model"``
    (mmcv / Lightning / training checkpoints); a leading ``"module."`` (DDP) is stripped. A run
    folder of this project (or its ``checkpoints/last.ckpt``) gives its model's weights: the
    ``model.`` prefix is removed and the regularizer's state left out.

    Args:
        path: the checkpoint file.
        name: the argument name used in error messages.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file cannot be read with ``weights_only=True`` or holds no state dict.
    """
    file = Path(path)
    if file.is_dir() and (file / "checkpoints" / "last.ckpt").is_file():
        file = file / "checkpoints" / "last.ckpt"  # a run folder: its last checkpoint
    if not file.is_file():
        raise FileNotFoundError(
            f"{name}: expected a checkpoint file, got {str(file)!r} (not found)"
        )
    try:
        checkpoint = torch.load(file, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as error:
        raise ValueError(
            f"{name}: could not read a checkpoint from {str(file)!r}: {error}"
        ) from error
    if isinstance(checkpoint, Mapping):
        for key in _WRAPPER_KEYS:
            if isinstance(checkpoint.get(key), Mapping):
                checkpoint = checkpoint[key]
                break
    if not isinstance(checkpoint, Mapping) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in checkpoint.items()
    ):
        raise ValueError(
            f"{name}: expected a state dict (str -> Tensor) in {str(file)!r}, "
            f"got {type(checkpoint).__name__}"
        )
    state = dict(checkpoint)
    if _is_run_checkpoint(state):
        return _model_part(state)
    if state and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


def _is_run_checkpoint(state: Mapping[str, Tensor]) -> bool:
    """A training checkpoint of this project: the model under ``model.``, maybe a regularizer."""
    return (
        bool(state)
        and any(k.startswith("model.") for k in state)
        and all(k.startswith(("model.", "regularizer.", "criterion.")) for k in state)
    )


def _model_part(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}


def _adapt_input_conv(weight: Tensor, in_channels: int) -> Tensor:
    """Adapts a first-conv weight ``(O, I, k, k)`` to ``in_channels`` inputs (as timm does).

    One channel: the sum over the input channels (a grey image seen as equal R, G, B). Otherwise
    the channels are repeated cyclically and rescaled by ``I / in_channels``.
    """
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)  # (O, 1, k, k)
    repeats = -(-in_channels // weight.shape[1])
    tiled = weight.repeat(1, repeats, 1, 1)[:, :in_channels]  # (O, in_channels, k, k)
    return tiled * (weight.shape[1] / in_channels)


def _listing(keys: Sequence[str]) -> str:
    shown = ", ".join(keys[:_LISTED])
    return f"{shown}, ... ({len(keys)} in all)" if len(keys) > _LISTED else shown


def load_pretrained(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    skip_prefixes: Sequence[str] = (),
    first_conv: str | None = None,
    strict: bool = True,
    hint: str = "",
) -> tuple[list[str], list[str]]:
    """Loads a local checkpoint into ``model`` (in place), checking every key and shape.

    * Keys of the checkpoint starting with one of ``skip_prefixes`` are ignored, and so are the
      model's own keys with those prefixes when the checkpoint's shapes differ (a classifier with
      another number of classes keeps its fresh initialisation).
    * ``first_conv`` names the first convolution's weight: when only its number of input channels
      differs, the checkpoint's weight is adapted (summed for 1 channel).
    * BatchNorm ``num_batches_tracked`` buffers may be absent from old checkpoints.

    Args:
        model: the module to load into.
        path: a local checkpoint file (torchvision / mmcv format).
        skip_prefixes: key prefixes that may be missing, unexpected or mismatched (e.g. ``"fc."``).
        first_conv: key of the first convolution's weight, e.g. ``"conv1.weight"``.
        strict: raise on missing / unexpected / mismatched keys; ``False`` loads what matches.
        hint: a sentence appended to the error message.

    Returns:
        The missing and unexpected keys (both empty when ``strict``).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: unreadable file, or (``strict``) keys missing from / unexpected in the
            checkpoint or of another shape; the message lists them.

    Example:
        >>> import tempfile, torch
        >>> from semantic_anchors.models import ResNet
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = folder + "/resnet18.pth"  # stands for torchvision's file
        ...     torch.save(ResNet(18).state_dict(), path)
        ...     backbone = ResNet(18, num_classes=0, output_stride=8)
        ...     load_pretrained(backbone, path, skip_prefixes=("fc.",))
        ([], [])
    """
    checkpoint = read_state_dict(path)
    own = model.state_dict()

    def skipped(key: str) -> bool:
        return any(key.startswith(prefix) for prefix in skip_prefixes)

    if first_conv is not None and first_conv in checkpoint and first_conv in own:
        source, target = checkpoint[first_conv], own[first_conv]  # (O, I, k, k), (O, I', k, k)
        inputs_differ = source.shape[1:2] != target.shape[1:2]
        rest_matches = source.shape[:1] + source.shape[2:] == target.shape[:1] + target.shape[2:]
        if source.ndim == 4 and inputs_differ and rest_matches:
            checkpoint[first_conv] = _adapt_input_conv(source, target.shape[1])

    loadable: dict[str, Tensor] = {}
    mismatched: list[str] = []
    unexpected: list[str] = []
    for key, value in checkpoint.items():
        if key not in own:
            if not skipped(key):
                unexpected.append(key)
        elif value.shape != own[key].shape:
            if not skipped(key):
                mismatched.append(
                    f"{key}: checkpoint {tuple(value.shape)} vs model {tuple(own[key].shape)}"
                )
        else:
            loadable[key] = value
    missing = [
        key
        for key in own
        if key not in loadable
        and not key.endswith(_OPTIONAL_SUFFIXES)
        and not skipped(key)
        and not any(m.startswith(f"{key}:") for m in mismatched)
    ]
    if strict and (missing or unexpected or mismatched):
        parts = [f"pretrained: checkpoint {str(path)!r} does not match {type(model).__name__}."]
        if missing:
            parts.append(f"Missing keys: {_listing(missing)}.")
        if unexpected:
            parts.append(f"Unexpected keys: {_listing(unexpected)}.")
        if mismatched:
            parts.append(f"Shape mismatches: {_listing(mismatched)}.")
        if hint:
            parts.append(hint)
        raise ValueError(" ".join(parts))
    model.load_state_dict(loadable, strict=False)
    return missing, unexpected
