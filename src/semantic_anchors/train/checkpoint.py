"""Checkpoints that are written atomically, load with ``weights_only=True`` and carry the RNGs."""

from __future__ import annotations

import errno
import hashlib
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

__all__ = [
    "AtomicCheckpointIO",
    "CheckpointWriteError",
    "capture_rng",
    "checkpoint_candidates",
    "load_checkpoint",
    "newest_readable",
    "restore_rng",
    "warn_low_space",
]


CHECKSUM_SUFFIX = ".sha256"
WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EIO, errno.EFBIG)


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (full disk, quota, read-only or unwritable folder).

    The message says where it was writing, how much it needed and had, that the previous
    checkpoint is intact, and how to resume. No partial file is left under a checkpoint's name.
    """


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify(path: Path) -> None:
    """Raise ``ValueError`` when ``path`` does not match the checksum written beside it (a file
    without one, e.g. copied by hand, is not checked)."""
    side = path.with_name(path.name + CHECKSUM_SUFFIX)
    if not side.is_file():
        return
    words = side.read_text().split()  # "<hex digest>  <file name>"
    if words and _sha256(path) != words[0]:
        raise ValueError(f"{path} does not match its checksum ({side.name}): the file is damaged")


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint of this project safely (tensors and plain Python values only), after
    checking it against the checksum written beside it.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is damaged or not a checkpoint of this project.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    _verify(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - report any unpickling failure with the path
        raise ValueError(f"{path} is not a readable checkpoint: {err}") from err
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "semantic_anchors" not in ckpt:
        raise ValueError(f"{path} is not a semantic-anchors checkpoint (no config / state_dict)")
    return ckpt


def rotated_names(keep: int) -> list[str]:
    """``["last.ckpt", "last-1.ckpt", ...]``: the newest first, ``keep`` of them."""
    return ["last.ckpt", *(f"last-{k}.ckpt" for k in range(1, max(1, keep)))]


def checkpoint_candidates(folder: Path) -> list[Path]:
    """The rotated checkpoints in ``folder`` (``checkpoints/``), the newest first."""
    folder = Path(folder)
    found = [p for p in folder.glob("last*.ckpt") if p.name == "last.ckpt" or _rank(p) > 0]
    return sorted(found, key=_rank)


def _rank(path: Path) -> int:
    if path.name == "last.ckpt":
        return 0
    tail = path.name[len("last-") : -len(".ckpt")]
    return int(tail) if path.name.startswith("last-") and tail.isdigit() else -1


def newest_readable(folder: Path) -> tuple[Path, dict[str, Any], list[tuple[Path, str]]]:
    """The newest checkpoint of ``folder`` (``checkpoints/``) that loads, its content, and the
    newer ones skipped with the reason.

    Raises:
        FileNotFoundError: no checkpoint in ``folder``.
        ValueError: none of them is readable (the message lists each with its reason).
    """
    candidates = checkpoint_candidates(folder)
    if not candidates:
        raise FileNotFoundError(f"no checkpoint in {folder} (no last.ckpt)")
    skipped: list[tuple[Path, str]] = []
    for path in candidates:
        try:
            return path, load_checkpoint(path), skipped
        except ValueError as err:
            skipped.append((path, " ".join(str(err).split())))
    listed = "; ".join(f"{p.name}: {why}" for p, why in skipped)
    raise ValueError(f"no readable checkpoint in {folder}: {listed}")


def describe_skipped(skipped: list[tuple[Path, str]], used: Path) -> str:
    """One line: which newer checkpoints were skipped and why, and which one is used."""
    names = "; ".join(f"{p.name} ({why})" for p, why in skipped)
    return f"skipped {names}; using {used}"


def _payload_bytes(obj: Any) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_payload_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_payload_bytes(v) for v in obj)
    return 0


def _write_error(path: Path, err: BaseException, needed: int) -> CheckpointWriteError:
    try:
        free = shutil.disk_usage(path.parent).free
        room = f"{free / 2**20:.1f} MB free"
    except OSError:
        room = "free space unknown"
    intact = [p.name for p in checkpoint_candidates(path.parent)]
    previous = (
        f"the previous checkpoint is intact ({', '.join(intact)})" if intact
        else "no earlier checkpoint exists"
    )  # fmt: skip
    run = path.parent.parent
    cause = getattr(err, "strerror", None) or " ".join(str(err).split())[:200]
    if "unexpected pos" in cause:  # torch's zip writer: a short write
        cause = "the write stopped short: the disk is full"
    code = getattr(err, "errno", None) or errno.EIO
    return CheckpointWriteError(
        code,
        f"could not write the checkpoint {path} ({cause}): it needs about "
        f"{needed / 2**20:.1f} MB, {room} on that disk; {previous}. Free some space (or give a "
        f"writable folder) and resume with: semantic-anchors train --resume {run}",
    )


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write to a temporary file in the same folder, fsync, checksum, then ``os.replace``: never a
    torn file under a checkpoint's name. ``last.ckpt`` is rotated: the ``keep - 1`` previous ones
    stay as ``last-1.ckpt``, ... (hard links, so ``last.ckpt`` exists at every moment).

    Raises:
        CheckpointWriteError: the disk is full or the folder unwritable (the temporary file is
            removed; the previous checkpoints are untouched).
    """

    def __init__(self, keep: int = 2) -> None:
        super().__init__()
        self.keep = max(1, int(keep))

    def save_checkpoint(self, checkpoint: dict, path: str | Path, storage_options=None) -> None:
        path = Path(path)
        tmp: str | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
            with os.fdopen(fd, "wb") as fh:
                torch.save(checkpoint, fh)
                fh.flush()
                os.fsync(fh.fileno())
            side_tmp = Path(tmp + CHECKSUM_SUFFIX)
            side_tmp.write_text(f"{_sha256(Path(tmp))}  {path.name}\n")
        except (OSError, RuntimeError) as err:
            for leftover in (tmp, tmp and tmp + CHECKSUM_SUFFIX):
                if leftover:
                    Path(leftover).unlink(missing_ok=True)
            if not _is_write_failure(err):
                raise
            raise _write_error(path, err, _payload_bytes(checkpoint)) from err
        except BaseException:
            if tmp:
                Path(tmp).unlink(missing_ok=True)
                Path(tmp + CHECKSUM_SUFFIX).unlink(missing_ok=True)
            raise
        try:
            if path.name == "last.ckpt" and self.keep > 1:
                _rotate(path.parent, self.keep)
            os.replace(tmp, path)  # the checkpoint first: a crash here leaves a stale checksum,
            os.replace(side_tmp, path.with_name(path.name + CHECKSUM_SUFFIX))  # -> falls back
        finally:  # whatever failed, no temporary file stays behind
            for leftover in (Path(tmp), side_tmp, *path.parent.glob(".last*.ckpt*.link")):
                leftover.unlink(missing_ok=True)

    def load_checkpoint(self, path: str | Path, map_location=None, weights_only=None) -> dict:
        if not Path(path).is_file():
            raise FileNotFoundError(f"no checkpoint at {path}")
        _verify(Path(path))
        return torch.load(path, map_location=map_location or "cpu", weights_only=True)


def _rotate(folder: Path, keep: int) -> None:
    """``last-(k-1)`` -> ``last-k`` down to ``last`` -> ``last-1`` (a hard link: ``last.ckpt`` is
    never absent), each with its checksum; the oldest beyond ``keep`` is dropped."""
    names = rotated_names(keep)
    for older, newer in reversed(list(zip(names[1:], names[:-1], strict=True))):
        if not (folder / newer).is_file():
            continue
        for suffix in ("", CHECKSUM_SUFFIX):
            src, dst = folder / (newer + suffix), folder / (older + suffix)
            if not src.is_file():  # a checkpoint without a checksum: drop a stale one
                dst.unlink(missing_ok=True)
            elif newer == "last.ckpt":
                link = folder / f".{dst.name}.link"
                link.unlink(missing_ok=True)
                try:
                    os.link(src, link)
                except OSError:  # no hard links on this file system: a copy
                    shutil.copy2(src, link)
                os.replace(link, dst)
            else:
                os.replace(src, dst)


def _is_write_failure(err: BaseException) -> bool:
    if isinstance(err, OSError):
        return err.errno in WRITE_ERRNOS
    text = str(err).lower()  # torch's zip writer reports a short write as a RuntimeError
    return any(k in text for k in ("unexpected pos", "write", "inline_container", "file"))


def checkpoint_bytes(module: torch.nn.Module) -> int:
    """An estimate of one checkpoint's size: the state and, per parameter, the optimizer's
    moments (two, as AdamW keeps; SGD keeps one)."""
    state = sum(t.numel() * t.element_size() for t in module.state_dict().values())
    params = sum(p.numel() * p.element_size() for p in module.parameters() if p.requires_grad)
    return state + 2 * params


def warn_low_space(out_dir: Path, module: torch.nn.Module, keep: int) -> None:
    """Warn (stderr) when the run folder's disk has room for fewer than ``keep + 1`` checkpoints
    (the rotation writes a new one before it drops the oldest)."""
    need = (keep + 1) * checkpoint_bytes(module)
    try:
        free = shutil.disk_usage(out_dir).free
    except OSError:
        return
    if free < need:
        print(
            f"warning: {out_dir} has {free / 2**20:.1f} MB free, less than the "
            f"{need / 2**20:.1f} MB that {keep + 1} checkpoints of this model take "
            "(trainer.keep_checkpoints + 1); a checkpoint write may fail",
            file=sys.stderr,
        )


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
