"""Checkpoints that are written atomically, load with ``weights_only=True`` and carry the RNGs."""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

__all__ = ["AtomicCheckpointIO", "capture_rng", "load_checkpoint", "restore_rng"]


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint of this project safely (tensors and plain Python values only).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a checkpoint of this project.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - report any unpickling failure with the path
        raise ValueError(f"{path} is not a readable checkpoint: {err}") from err
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "semantic_anchors" not in ckpt:
        raise ValueError(f"{path} is not a semantic-anchors checkpoint (no config / state_dict)")
    return ckpt


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write to a temporary file in the same folder, then ``os.replace``: never a torn file."""

    def save_checkpoint(self, checkpoint: dict, path: str | Path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                torch.save(checkpoint, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def load_checkpoint(self, path: str | Path, map_location=None, weights_only=None) -> dict:
        if not Path(path).is_file():
            raise FileNotFoundError(f"no checkpoint at {path}")
        return torch.load(path, map_location=map_location or "cpu", weights_only=True)


def capture_rng() -> dict[str, Any]:
    """The RNG states of torch (CPU and CUDA), numpy and python, as checkpoint-safe values."""
    np_state = np.random.get_state()  # noqa: NPY002 - the legacy global RNG is what we restore
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state((  # noqa: NPY002
        "MT19937", np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
        np_state["has_gauss"], np_state["cached_gaussian"],
    ))  # fmt: skip
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
