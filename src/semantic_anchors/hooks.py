"""Attach SAR to models you do not own: capture the input of the final classifier with a hook."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["FeatureCapture", "find_classifier"]

# Attribute paths of the final classifier in common model families, tried in order.
_CLASSIFIER_PATHS = (
    "classifier",  # this project's models; torchvision VGG / MobileNet-style (Sequential)
    "decode_head.conv_seg",  # mmseg decode heads
    "conv_seg",  # an mmseg head on its own
    "segmentation_head",  # segmentation_models_pytorch: Sequential(Conv2d, Upsampling, Activation)
    "head.fc",  # timm (also reachable through get_classifier())
    "fc",  # torchvision ResNet
    "head",
)
_DROPOUT_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
_DROPOUT_NAMES = ("dropout", "drop", "head_drop")


def _get(module: nn.Module, path: str) -> nn.Module | None:
    current: Any = module
    for part in path.split("."):
        current = getattr(current, part, None)
        if current is None:
            return None
    return current if isinstance(current, nn.Module) else None


def _last_layer(module: nn.Module) -> nn.Module:
    """The layer that produces the logits: the last Linear / 1x1 Conv of a container."""
    if isinstance(module, (nn.Linear, nn.Conv2d, nn.Conv1d)):
        return module
    layers = [m for m in module.modules() if isinstance(m, (nn.Linear, nn.Conv2d, nn.Conv1d))]
    if not layers:
        raise ValueError(
            f"`classifier` module {type(module).__name__} contains no nn.Linear / nn.Conv2d layer"
        )
    return layers[-1]


def find_classifier(model: nn.Module, classifier: str | nn.Module | None = None) -> nn.Module:
    """Find the final classifier layer of ``model``.

    Args:
        model: any ``nn.Module``.
        classifier: a module of ``model``, a dotted attribute path (``"decode_head.conv_seg"``),
            or ``None`` to search ``get_classifier()`` (timm) then the usual attribute names
            (``classifier``, ``decode_head.conv_seg``, ``segmentation_head``, ``head.fc``, ``fc``,
            ``head``). Containers resolve to their last ``Linear`` / ``Conv`` layer.

    Raises:
        ValueError: no classifier could be found, or the path does not exist.
    """
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
    getter = getattr(model, "get_classifier", None)
    if callable(getter):
        found = getter()
        if isinstance(found, nn.Module) and not isinstance(found, nn.Identity):
            return _last_layer(found)
    for path in _CLASSIFIER_PATHS:
        found = _get(model, path)
        if found is not None and not isinstance(found, nn.Identity):
            return _last_layer(found)
    raise ValueError(
        f"could not find the final classifier of {type(model).__name__}; tried get_classifier() "
        f"and {list(_CLASSIFIER_PATHS)}: pass `classifier=` (a module or a dotted path)"
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
    the features are the pre-dropout ones SAR expects) on every forward pass.

    Args:
        model: the model (torchvision-, timm-, segmentation_models_pytorch- or mmseg-style).
        classifier: the classifier module or its dotted path; found automatically when ``None``
            (see :func:`find_classifier`).
        features_at: a module or dotted path whose *input* holds the features; by default the
            dropout right before the classifier when there is one, else the classifier itself.

    Attributes:
        classifier: the final classifier layer to pass to the regularizer.
        features: the tensor captured by the last forward pass.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU())
        >>> net.fc = torch.nn.Linear(8, 3)
        >>> net.forward = lambda x: net.fc(net[1](net[0](x)))
        >>> capture = FeatureCapture(net)
        >>> _ = net(torch.randn(5, 4))
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
        self.classifier = find_classifier(model, classifier)
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
        self._handle = target.register_forward_pre_hook(self._hook)

    def _hook(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        self._features = args[0]

    @property
    def features(self) -> torch.Tensor:
        """The captured features of the last forward pass."""
        if self._features is None:
            raise RuntimeError("no features captured yet: run a forward pass of the model first")
        return self._features

    def remove(self) -> None:
        """Remove the hook and drop the stored tensor."""
        self._handle.remove()
        self._features = None

    def __enter__(self) -> FeatureCapture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()
