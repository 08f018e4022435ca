"""Model registry and factory: ``register_model``, ``list_models``, ``create_model``.

A registered builder is a function ``builder(num_classes=..., **kwargs) -> nn.Module`` whose
result follows the model contract of :mod:`semantic_anchors.models` (``forward_features``,
``forward_head``, ``forward_train``, ``classifier``, ...).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from torch import nn

from semantic_anchors._registry import Registry

__all__ = [
    "MODELS",
    "ModelEntry",
    "create_model",
    "get_model_entry",
    "inherit_signature",
    "list_models",
    "register_model",
]

TASKS = ("classification", "segmentation")

BuilderT = TypeVar("BuilderT", bound=Callable[..., nn.Module])


@dataclass(frozen=True)
class ModelEntry:
    """One registered model.

    Attributes:
        name: the name given to :func:`create_model`.
        builder: the function that builds the model.
        task: ``"classification"`` or ``"segmentation"``.
        description: one line (the builder's docstring unless given at registration).
    """

    name: str
    builder: Callable[..., nn.Module]
    task: str
    description: str = ""


# The modules that hold @register_model builders: imported before any query of MODELS.
_BUILDER_MODULES = (
    "backbones.small", "backbones.resnet_cifar", "backbones.resnet", "segmentors.resnet",
    "segmentors.hrnet", "hf.classifiers", "hf.segformer", "hf.upernet", "hf.mask2former",
)  # fmt: skip
MODELS: Registry[Callable[..., nn.Module]] = Registry(
    "model", normalize=str, supplied=("num_classes",), unique=True,
    modules=tuple(f"semantic_anchors.models.{m}" for m in _BUILDER_MODULES),
)  # fmt: skip


def register_model(
    *, task: str, name: str | None = None, description: str | None = None
) -> Callable[[BuilderT], BuilderT]:
    """Decorator that registers a model builder under ``name`` (default: the function's name).

    Args:
        task: ``"classification"`` or ``"segmentation"``.
        name: registry name; defaults to ``builder.__name__``.
        description: one line for ``semantic-anchors list models``; defaults to the first
            paragraph of the builder's docstring.

    Raises:
        ValueError: unknown ``task`` or a name that is already registered.

    Example:
        >>> from torch import nn
        >>> @register_model(task="classification", name="_doc_linear", description="A linear layer.")
        ... def _doc_linear(num_classes: int = 10) -> nn.Module:
        ...     return nn.Linear(4, num_classes)
        >>> "_doc_linear" in list_models()
        True
        >>> MODELS.unregister("_doc_linear")
    """
    if task not in TASKS:
        raise ValueError(f"task: expected one of {list(TASKS)}, got {task!r}")

    def decorator(builder: BuilderT) -> BuilderT:
        key = name or builder.__name__
        MODELS.add(key, builder, description=description, task=task)
        return builder

    return decorator


def inherit_signature(
    target: Callable[..., Any], *, bound: tuple[str, ...] = (), **defaults: Any
) -> Callable[[BuilderT], BuilderT]:
    """Gives a ``builder(**kwargs)`` the keyword signature of ``target``.

    A builder that forwards ``**kwargs`` to a constructor then shows (and :func:`create_model`
    checks) the constructor's real arguments. ``bound`` lists the arguments the builder fixes
    itself (hidden); ``defaults`` are the builder's own defaults, shown instead of the target's.
    """
    signature = inspect.signature(target)
    parameters = []
    for parameter in signature.parameters.values():
        if parameter.name in ("self", *bound):
            continue
        if parameter.name in defaults:
            parameter = parameter.replace(default=defaults[parameter.name])
        parameters.append(parameter)

    def decorator(builder: BuilderT) -> BuilderT:
        own = inspect.signature(builder)
        builder.__signature__ = own.replace(  # type: ignore[attr-defined]
            parameters=parameters
        )
        return builder

    return decorator


def list_models(pattern: str | None = None, *, task: str | None = None) -> list[str]:
    """Returns the sorted names of the registered models.

    Args:
        pattern: optional shell-style pattern, e.g. ``"deeplabv3_*"``.
        task: optional filter, ``"classification"`` or ``"segmentation"``.

    Raises:
        ValueError: unknown ``task``.

    Example:
        >>> from semantic_anchors.models import list_models
        >>> list_models("resnet*", task="classification")[:2]
        ['resnet101', 'resnet18']
    """
    if task is not None and task not in TASKS:
        raise ValueError(f"task: expected one of {list(TASKS)} or None, got {task!r}")
    return MODELS.names(pattern) if task is None else MODELS.names(pattern, task=task)


def get_model_entry(name: str) -> ModelEntry:
    """Returns the :class:`ModelEntry` registered under ``name``.

    Raises:
        TypeError: ``name`` is not a string.
        ValueError: ``name`` is not registered; the message lists close matches.
    """
    if not isinstance(name, str):
        raise TypeError(f"name: expected a model name (str), got {type(name).__name__}")
    entry = MODELS.entry(name)
    return ModelEntry(entry.name, entry.obj, entry.tags["task"], entry.description)  # type: ignore[arg-type]


def create_model(
    name: str,
    num_classes: int | None = None,
    *,
    prototype_head: str | None = None,
    prototype_options: dict[str, Any] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Builds a registered model.

    Args:
        name: a name from :func:`list_models`.
        num_classes: number of output classes; ``None`` keeps the builder's default
            (1000 for the ImageNet ResNets, 10 for the CIFAR / small models, 19 for segmentors).
        prototype_head: ``"protoseg"`` swaps a segmentor's classifier for ProtoSeg's
            non-learnable prototype classifier (:class:`~.protoseg.ProtoSegSegmentor`; a
            recipe's ``model.prototype_head: protoseg``); ``None`` keeps the model's own.
        prototype_options: keyword arguments of :class:`~.protoseg.ProtoSegSegmentor`
            (``num_prototypes``, ``embed_dim``, ``dropout``, ...).
        **kwargs: passed to the builder (e.g. ``in_channels``, ``output_stride``, ``pretrained``).

    Returns:
        The model, in training mode.

    Raises:
        ValueError: unknown ``name`` (with close matches) or a bad argument value; a
            ``prototype_head`` on a classification model, or unknown ``prototype_options``.
        TypeError: a keyword the builder does not accept (the message lists the accepted ones),
            or an argument of the wrong type.

    Example:
        >>> import torch
        >>> from semantic_anchors.models import create_model
        >>> model = create_model("small_cnn", num_classes=10, in_channels=1)
        >>> model(torch.randn(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """
    entry = get_model_entry(name)
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    parameters = inspect.signature(entry.builder).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    if not accepts_any:
        accepted = [
            p.name
            for p in parameters.values()
            if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        ]
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown:
            raise TypeError(
                f"create_model({name!r}): unexpected keyword argument(s) {unknown}; "
                f"expected some of {accepted}"
            )
    wrap = None
    if prototype_head is not None or prototype_options is not None:
        from .segmentors.protoseg import prototype_head_wrapper  # checked before the model is built

        wrap = prototype_head_wrapper(
            prototype_head, prototype_options, model=name, task=entry.task
        )
    model = entry.builder(**kwargs)
    return model if wrap is None else wrap(model)
