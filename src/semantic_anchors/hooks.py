"""Attach SAR to models you do not own: capture the input of the final classifier with a hook."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

__all__ = ["FeatureCapture", "find_classifier"]

# Attribute paths of the final classifier in common model families, tried in order after timm's
# `get_classifier()`. Nested main heads come first so that an auxiliary head (`auxiliary_head`,
# `aux_classifier`, `classification_head`, `AuxLogits`) is never chosen: none of those is listed.
_CLASSIFIER_PATHS = (
    "decode_head.classifier",  # transformers SegFormer / UperNet / BEiT segmentation
    "decode_head.conv_seg",  # mmseg EncoderDecoder; this project's segmentors
    "decode_head.-1.conv_seg",  # mmseg CascadeEncoderDecoder (OCRNet): decode_head is a ModuleList
    "segmentation_head",  # segmentation_models_pytorch: Sequential(Conv2d, upsampling, activation)
    "classifier",  # transformers *ForImageClassification; torchvision VGG / MobileNet /
    # EfficientNet (Sequential -> last Linear) and FCN / DeepLabV3 heads (Sequential -> last Conv2d)
    "head.fc",  # timm ClassifierHead / NormMlpClassifierHead (ConvNeXt)
    "fc",  # torchvision and timm ResNet, torchvision Inception / GoogLeNet
    "head",  # timm ViT / DeiT / Swin (a Linear), other heads (-> last Linear / Conv)
    "conv_seg",  # an mmseg decode head on its own
)
_DROPOUT_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
_DROPOUT_NAMES = ("dropout", "drop", "head_drop")
_LAYER_TYPES = (nn.Linear, nn.Conv2d, nn.Conv1d)
_WRAPPER_TYPES = (nn.DataParallel, nn.parallel.DistributedDataParallel)


def _unwrap(model: nn.Module) -> nn.Module:
    """The module inside a ``DataParallel`` / ``DistributedDataParallel`` wrapper."""
    while isinstance(model, _WRAPPER_TYPES):
        model = model.module
    return model


def _get(module: nn.Module, path: str) -> nn.Module | None:
    """The submodule at a dotted ``path`` (``-1`` style parts index containers), or ``None``."""
    current: Any = module
    for part in path.split("."):
        if part.lstrip("-").isdigit() and isinstance(current, (nn.ModuleList, nn.Sequential)):
            index = int(part)
            current = current[index] if -len(current) <= index < len(current) else None
        else:
            current = getattr(current, part, None)
        if current is None:
            return None
    return current if isinstance(current, nn.Module) else None


def _last_layer(module: nn.Module) -> nn.Module:
    """The layer that produces the logits: the last Linear / Conv of a container.

    Raises:
        ValueError: ``module`` contains no ``nn.Linear`` / ``nn.Conv`` layer.
    """
    if isinstance(module, _LAYER_TYPES):
        return module
    layers = [m for m in module.modules() if isinstance(m, _LAYER_TYPES)]
    if not layers:
        raise ValueError(
            f"`classifier` module {type(module).__name__} contains no nn.Linear / nn.Conv2d layer"
        )
    return layers[-1]


def _rejection(found: object) -> str | None:
    """Why ``found`` is not a usable classifier, or ``None`` when it is one."""
    if not isinstance(found, nn.Module):
        return f"returned {type(found).__name__}"
    if isinstance(found, nn.Identity):
        return "nn.Identity"
    if not any(isinstance(m, _LAYER_TYPES) for m in found.modules()):
        return f"{type(found).__name__} without Linear / Conv"
    return None


def find_classifier(model: nn.Module, classifier: str | nn.Module | None = None) -> nn.Module:
    """Find the final classifier layer of ``model``.

    Known layouts, tried in this order: timm's ``get_classifier()``, then ``decode_head.classifier``
    (transformers SegFormer / UperNet), ``decode_head.conv_seg`` and ``decode_head.-1.conv_seg``
    (mmseg), ``segmentation_head`` (segmentation_models_pytorch), ``classifier`` (transformers
    ``*ForImageClassification``, torchvision VGG / MobileNet / EfficientNet / FCN / DeepLabV3),
    ``head.fc`` (timm), ``fc`` (ResNet), ``head`` (timm ViT / Swin) and ``conv_seg`` (an mmseg
    head). Auxiliary heads (``auxiliary_head``, ``aux_classifier``, ``classification_head``) are
    never chosen. A ``DataParallel`` / ``DistributedDataParallel`` wrapper is looked through.

    Args:
        model: any ``nn.Module``.
        classifier: a module of ``model``, a dotted attribute path (``"decode_head.conv_seg"``),
            or ``None`` to search the layouts above. Containers resolve to their last ``Linear``
            / ``Conv`` layer; ``nn.Identity`` (a model built without classes) is skipped.

    Returns:
        The ``nn.Linear`` / ``nn.Conv`` layer that produces the logits.

    Raises:
        ValueError: the path names no submodule, the module holds no Linear / Conv layer, or no
            known layout matched (the message lists every path tried and why it was rejected).
        TypeError: ``classifier`` is neither a module, a string nor ``None``.

    Example:
        >>> net = torch.nn.Module()
        >>> net.decode_head = torch.nn.Module()
        >>> net.decode_head.classifier = torch.nn.Conv2d(16, 4, 1)
        >>> find_classifier(net) is net.decode_head.classifier
        True
    """
    model = _unwrap(model)
    if isinstance(classifier, nn.Module):
        return _last_layer(classifier)
    if isinstance(classifier, str):
        found = _get(model, classifier)
        if found is None:
            raise ValueError(f"`classifier` path {classifier!r} names no submodule of the model")
        return _last_layer(found)
    if classifier is not None:
        raise TypeError(
            f"`classifier` must be an nn.Module, a str path or None, got {classifier!r}"
        )
    tried = []
    getter = getattr(model, "get_classifier", None)
    if callable(getter):
        found = getter()
        reason = _rejection(found)
        if reason is None:
            return _last_layer(found)
        tried.append(f"get_classifier() ({reason})")
    else:
        tried.append("get_classifier() (no such method)")
    for path in _CLASSIFIER_PATHS:
        found = _get(model, path)
        reason = "missing" if found is None else _rejection(found)
        if reason is None:
            return _last_layer(found)
        tried.append(f"{path!r} ({reason})")
    raise ValueError(
        f"could not find the final classifier of {type(model).__name__}; tried "
        f"{', '.join(tried)}: pass `classifier=` (the layer, or a dotted path such as "
        f"'decode_head.conv_seg')"
    )


def _preceding_dropout(model: nn.Module, layer: nn.Module) -> nn.Module | None:
    """A dropout applied right before ``layer``, if the model's structure shows one."""
    for parent in model.modules():
        children = list(parent.named_children())
        for index, (_, child) in enumerate(children):
            if child is not layer:
                continue
            if isinstance(parent, nn.Sequential) and index > 0:
                previous = children[index - 1][1]
                return previous if isinstance(previous, _DROPOUT_TYPES) else None
            for name in _DROPOUT_NAMES:
                candidate = getattr(parent, name, None)
                if isinstance(candidate, _DROPOUT_TYPES):
                    return candidate
            return None
    return None


class FeatureCapture:
    """Record the features a model feeds to its final classifier, without editing ``forward``.

    A forward pre-hook stores the input of the classifier (or of the dropout right before it, so
    the features are the pre-dropout ones SAR expects). It records **only while the model's own
    forward runs** (``model(x)``): hooks on ``model`` itself open and close a recording window, so
    the regularizer calling ``capture.classifier`` on its anchors, another regularizer, or any
    call of the classifier outside ``model(x)`` never overwrites the batch features. The window is
    a depth counter (nested and re-entrant calls of ``model`` are fine) and closes even when the
    forward raises. Each outermost forward starts by dropping the previous features, so a failed
    forward never leaves stale ones; within it the last input of the hooked module wins.

    Args:
        model: the model (transformers-, torchvision-, timm-, segmentation_models_pytorch- or
            mmseg-style); a ``DataParallel`` / ``DistributedDataParallel`` wrapper is looked
            through.
        classifier: the classifier module or its dotted path; found automatically when ``None``
            (see :func:`find_classifier`).
        features_at: a module or dotted path whose *input* holds the features; by default the
            dropout right before the classifier when there is one, else the classifier itself.

    Attributes:
        classifier: the final classifier layer to pass to the regularizer.
        hooked_module: the module whose input is recorded.
        features: the features of the last forward pass of ``model``.

    Shape:
        - features: the hooked module's input, ``(B, D)`` for a vector classifier, ``(B, D, h, w)``
          for a 1x1-conv one: exactly what ``sar(features, labels, classifier)`` takes.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
        ValueError: ``classifier`` or ``features_at`` names no submodule, no classifier was
            found (see :func:`find_classifier`), or ``model`` is the classifier itself.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU())
        >>> net.fc = torch.nn.Linear(8, 3)
        >>> net.forward = lambda x: net.fc(net[1](net[0](x)))
        >>> capture = FeatureCapture(net)
        >>> _ = net(torch.randn(5, 4))
        >>> _ = capture.classifier(torch.randn(3, 8))  # outside net's forward: not recorded
        >>> capture.features.shape
        torch.Size([5, 8])
    """

    def __init__(
        self,
        model: nn.Module,
        classifier: str | nn.Module | None = None,
        features_at: str | nn.Module | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"`model` must be an nn.Module, got {type(model).__name__}")
        model = _unwrap(model)
        self.classifier = find_classifier(model, classifier)
        if self.classifier is model:
            # The regularizer's own classifier call would then open the recording window.
            raise ValueError(
                f"`model` is its own classifier ({type(model).__name__}): pass the network "
                "whose forward calls the classifier"
            )
        if isinstance(features_at, str):
            target = _get(model, features_at)
            if target is None:
                raise ValueError(f"`features_at` path {features_at!r} names no submodule")
        elif isinstance(features_at, nn.Module):
            target = features_at
        else:
            target = _preceding_dropout(model, self.classifier) or self.classifier
        self.hooked_module = target
        self._features: torch.Tensor | None = None
        self._depth = 0  # how many calls of `model` are running now
        self._paused = 0
        self._handles = [
            # prepend: the window opens before any other pre-hook of the model can raise
            model.register_forward_pre_hook(self._open, prepend=True),
            # always_call: the window closes even when forward raises
            model.register_forward_hook(self._close, always_call=True),
            target.register_forward_pre_hook(self._record, with_kwargs=True),
        ]

    def _open(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        if self._depth == 0 and not self._paused:
            self._features = None
        self._depth += 1

    def _close(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        self._depth = max(self._depth - 1, 0)

    def _record(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if self._depth == 0 or self._paused:
            return
        if args:
            self._features = args[0]
        elif kwargs:
            self._features = next(iter(kwargs.values()))

    @property
    def recording(self) -> bool:
        """Whether the model's forward is running now (and the capture is not paused)."""
        return self._depth > 0 and not self._paused

    @property
    def features(self) -> torch.Tensor:
        """The features of the last forward pass of the model.

        Raises:
            RuntimeError: no forward pass of the model has run since the capture was made (or
                removed), or the last one raised before reaching the hooked module.
        """
        if self._features is None:
            raise RuntimeError(
                "no features captured yet: run a forward pass of the model as `model(x)` first "
                "(calls of its classifier outside `model(x)`, and `model.forward(x)`, are not "
                "recorded)"
            )
        return self._features

    @contextmanager
    def paused(self) -> Iterator[FeatureCapture]:
        """Keep the current features while other forward passes of the model run.

        Example:
            >>> net = torch.nn.Sequential(torch.nn.Linear(4, 3))
            >>> capture = FeatureCapture(net, classifier="0")
            >>> _ = net(torch.randn(5, 4))
            >>> with capture.paused():
            ...     _ = net(torch.randn(2, 4))  # e.g. a validation batch
            >>> capture.features.shape
            torch.Size([5, 4])
        """
        self._paused += 1
        try:
            yield self
        finally:
            self._paused -= 1

    def remove(self) -> None:
        """Remove the hooks and drop the stored tensor."""
        for handle in self._handles:
            handle.remove()
        self._features = None
        self._depth = 0

    def __enter__(self) -> FeatureCapture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()
