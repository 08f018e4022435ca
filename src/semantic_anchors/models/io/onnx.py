"""ONNX export: a model's inference forward as an ONNX graph, with what ``predict`` needs to use it.

:func:`export_onnx` traces ``model.forward`` (the logits of eval mode: a segmentor's at the input
resolution, a classifier's ``(B, K)``) with torch's TorchScript-based exporter
(``torch.onnx.export(..., dynamo=False)``, opset :data:`OPSET`): batch, height and width are
dynamic axes, and nothing of a regularizer is in the graph (the model alone is traced). The
torch.export-based exporter (torch's default since 2.9) needs the ``onnxscript`` package and
specialises the same shape branches, so it buys nothing here.

Tracing records the branches taken for the traced input only. The zoo's dense models resize
"when the sizes differ" (HRNet's fusion, the resize-concat head, the final upsampling); the traced
input is :data:`TRACE_SIZE`, whose sides stay odd at every stride up to 16, so each of those
resizes is recorded (resizing to the same size is exact, so even sizes lose nothing). The
exported graph is then checked against the PyTorch model with onnxruntime at two input sizes and
two batch sizes (``verify``): a model whose forward branches on shapes in a way the trace cannot
generalise fails there, with the size at which it failed.

The file's ``metadata_props`` hold :data:`ONNX_FORMAT` and the model's description (task, number
and names of classes, input channels, normalisation, the inference settings of its run), each
value JSON-encoded; :func:`read_onnx_metadata` reads them back, :class:`OnnxModel` runs the file.
``onnx`` and ``onnxruntime`` are the optional extra ``semantic-anchors[onnx]``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "ONNX_FORMAT",
    "OPSET",
    "TRACE_SIZE",
    "OnnxModel",
    "export_onnx",
    "import_onnx",
    "read_onnx_metadata",
]

ONNX_FORMAT = "semantic-anchors-onnx/1"
OPSET = 17
TRACE_SIZE = (65, 97)  # (H, W): ceil(65 / s) and ceil(97 / s) are odd for s = 2, 4, 8, 16
CHECK_SIZE = (64, 96)  # a second size, even at every stride: the branches not taken in the trace
# Export check: |onnxruntime - torch| <= VERIFY_RTOL * max(1, max |torch|). Float error (~1e-5 of
# the logits' scale) passes; a graph that took another branch is off by the logits' own scale.
VERIFY_RTOL = 1e-3
_INSTALL = "pip install 'semantic-anchors[onnx]' (onnx>=1.15, onnxruntime>=1.17)"


def import_onnx(*, runtime_only: bool = False):
    """``(onnx, onnxruntime)``, or ``(None, onnxruntime)`` with ``runtime_only``.

    Raises:
        ModuleNotFoundError: a package of the ``onnx`` extra is missing (the message names it).
    """
    try:
        import onnxruntime
    except ImportError as err:
        raise ModuleNotFoundError(
            f"ONNX models need onnxruntime: {_INSTALL}", name="onnxruntime"
        ) from err
    if runtime_only:
        return None, onnxruntime
    try:
        import onnx
    except ImportError as err:
        raise ModuleNotFoundError(
            f"ONNX export needs the onnx package: {_INSTALL}", name="onnx"
        ) from err
    return onnx, onnxruntime


def _session(onnxruntime, path: str | os.PathLike[str], threads: int | None):
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = int(threads or torch.get_num_threads())
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: its warnings are about its own graph passes
    return onnxruntime.InferenceSession(
        str(path), sess_options=options, providers=["CPUExecutionProvider"]
    )


@contextlib.contextmanager
def _quiet():
    """Silence the exporter: its prints, and the graph dump its C++ side writes to the standard
    output when a conversion fails (the error then says what failed, in one line)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    try:
        with tempfile.TemporaryFile() as sink, contextlib.redirect_stdout(io.StringIO()):
            for fd in saved:
                os.dup2(sink.fileno(), fd)
            try:
                yield
            finally:
                for fd, copy in saved.items():
                    os.dup2(copy, fd)
    finally:
        for copy in saved.values():
            os.close(copy)


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    in_channels: int,
    metadata: dict[str, Any],
    name: str = "model",
    sample_size: tuple[int, int] = TRACE_SIZE,
    opset: int = OPSET,
    verify: bool = True,
) -> Path:
    """Write ``model``'s eval-mode forward to ``path`` (atomically) as an ONNX graph.

    Args:
        model: a model of the zoo (or any module mapping ``(B, C, H, W)`` images to logits);
            it is put in eval mode.
        path: the output file, e.g. ``model.onnx``.
        in_channels: image channels of its input.
        metadata: JSON-serialisable values stored in the file's ``metadata_props`` (one key
            each, JSON-encoded), next to ``format``.
        name: the model's name, for the messages.
        sample_size: ``(H, W)`` of the traced input (default :data:`TRACE_SIZE`).
        opset: the ONNX opset.
        verify: compare the graph with the model under onnxruntime (see the module docstring).

    Shape:
        input ``images``: ``(B, in_channels, H, W)`` float32; output ``logits``:
        ``(B, K, H, W)`` for a dense model, ``(B, K)`` for a classifier.

    Raises:
        ModuleNotFoundError: the ``onnx`` extra is missing.
        ValueError: the model cannot be traced or converted (the exporter's reason is quoted), or
            the graph disagrees with the model (the size and the difference are named).

    Example:
        >>> import tempfile
        >>> from semantic_anchors.models import create_model
        >>> from semantic_anchors.models.io.onnx import export_onnx, read_onnx_metadata
        >>> model = create_model("fcn_small", num_classes=3)
        >>> file = export_onnx(model, tempfile.mkdtemp() + "/m.onnx", in_channels=3,
        ...                    metadata={"num_classes": 3})
        >>> read_onnx_metadata(file)["num_classes"]
        3
    """
    onnx, onnxruntime = import_onnx()
    path = Path(path)
    model = model.eval()
    dense = bool(getattr(model, "dense", False))
    gen = torch.Generator().manual_seed(0)
    sample = torch.randn(1, in_channels, *sample_size, generator=gen)  # (1, C, H, W)
    axes = {0: "batch", 2: "height", 3: "width"}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with warnings.catch_warnings(), _quiet():
            # The TracerWarnings name Python checks of the model's inputs (constant in the graph);
            # the DeprecationWarning is the TorchScript exporter's own (see the module docstring).
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            torch.onnx.export(
                model, (sample,), str(tmp), dynamo=False, opset_version=opset,
                input_names=["images"], output_names=["logits"], do_constant_folding=True,
                dynamic_axes={"images": axes, "logits": axes if dense else {0: "batch"}},
            )  # fmt: skip
        proto = onnx.load(str(tmp))
        with torch.no_grad():
            classes = model(sample).shape[1]
        # The Resize of the upsampling leaves the class axis unnamed: it is the model's constant.
        proto.graph.output[0].type.tensor_type.shape.dim[1].dim_value = int(classes)
        props = {"format": ONNX_FORMAT, **metadata}
        onnx.helper.set_model_props(proto, {k: json.dumps(v) for k, v in props.items()})
        onnx.save(proto, str(tmp))
        if verify:
            _verify(model, tmp, in_channels, name, sample_size, onnxruntime)
    except Exception as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, (ValueError, ModuleNotFoundError)):
            raise
        message = " ".join(str(err).split())[:500]
        raise ValueError(
            f"model {name!r} cannot be exported to ONNX: {type(err).__name__}: {message}"
        ) from err
    os.replace(tmp, path)
    return path


@torch.no_grad()
def _verify(model, file, in_channels, name, sample_size, onnxruntime) -> None:
    """The graph's logits equal the model's at the traced size (batch 1) and at
    :data:`CHECK_SIZE` (batch 2), within :data:`VERIFY_RTOL`."""
    session = _session(onnxruntime, file, None)
    gen = torch.Generator().manual_seed(1)
    for batch, (h, w) in ((1, tuple(sample_size)), (2, CHECK_SIZE)):
        images = torch.randn(batch, in_channels, h, w, generator=gen)  # (B, C, H, W)
        try:
            expected = model(images)
        except Exception:  # noqa: BLE001 - a size the model itself refuses (a fixed-size ViT)
            continue
        try:
            (got,) = session.run(None, {"images": images.numpy()})
        except Exception as err:  # noqa: BLE001 - onnxruntime's own error types
            message = " ".join(str(err).split())[:300]
            raise ValueError(
                f"model {name!r}: the ONNX graph traced at {sample_size[0]}x{sample_size[1]} fails "
                f"at {h}x{w} ({message}); its forward branches on tensor shapes in a way tracing "
                "cannot record"
            ) from None
        diff = float((torch.from_numpy(got) - expected).abs().max()) if got.size else 0.0
        scale = max(1.0, float(expected.abs().max()))
        if tuple(got.shape) != tuple(expected.shape) or not diff <= VERIFY_RTOL * scale:
            raise ValueError(
                f"model {name!r}: the ONNX graph disagrees with the model at {h}x{w} (shape "
                f"{tuple(got.shape)} vs {tuple(expected.shape)}, max abs difference {diff:.3g} "
                f"for logits up to {scale:.3g}); its forward branches on tensor shapes or values "
                "in a way tracing cannot record"
            )


def _decode(path: Path, props: dict[str, str]) -> dict[str, Any]:
    if props.get("format") != json.dumps(ONNX_FORMAT):
        raise ValueError(
            f"{path} is not an ONNX model exported by semantic-anchors (no metadata "
            f"format={ONNX_FORMAT!r}); write one with `semantic-anchors export RUN --format onnx "
            "--out FILE`"
        )
    try:
        return {k: json.loads(v) for k, v in props.items()}
    except ValueError as err:
        raise ValueError(f"{path}: unreadable metadata_props: {err}") from None


def read_onnx_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``metadata_props`` of an ONNX file written by :func:`export_onnx`, decoded.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: not an ONNX file, or not one written by :func:`export_onnx`.
        ModuleNotFoundError: onnxruntime is missing.
    """
    return OnnxModel(path, threads=1).metadata


class OnnxModel:
    """An exported ONNX file under onnxruntime (CPU), called like the model on torch tensors.

    Args:
        path: a file written by :func:`export_onnx`.
        threads: onnxruntime's intra-op threads (default: ``torch.get_num_threads()``).

    Attributes:
        metadata: the decoded ``metadata_props``.
        dense: whether the logits are ``(B, K, H, W)`` (``metadata["task"]`` is segmentation).

    Shape:
        images ``(B, C, H, W)`` float -> logits ``(B, K, H, W)`` or ``(B, K)`` float32 (CPU).

    Raises:
        FileNotFoundError, ValueError, ModuleNotFoundError: as :func:`read_onnx_metadata`.
    """

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None) -> None:
        _, onnxruntime = import_onnx(runtime_only=True)
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no ONNX model at {path}")
        try:
            self.session = _session(onnxruntime, path, threads)
        except Exception as err:  # noqa: BLE001 - onnxruntime's own error types
            message = " ".join(str(err).split())[:300]
            raise ValueError(f"{path} is not a readable ONNX model: {message}") from None
        self.path = path
        self.metadata = _decode(path, dict(self.session.get_modelmeta().custom_metadata_map))
        self.dense = self.metadata.get("task") == "segmentation"

    def __call__(self, images: Tensor) -> Tensor:
        array = images.detach().to("cpu", torch.float32).contiguous().numpy()  # (B, C, H, W)
        (logits,) = self.session.run(None, {"images": array})
        return torch.from_numpy(logits)  # (B, K, H, W) or (B, K)

    def eval(self) -> OnnxModel:  # the interface of a module in eval mode
        return self
