"""ProtoSeg (Zhou et al., CVPR 2022): a non-learnable multi-prototype classifier for any segmentor.

:class:`PrototypeClassifier` holds ``M`` unit-norm prototypes per class (a buffer, moved by the
momentum update of :class:`~semantic_anchors.regularizers.protoseg.ProtoSegLoss`, never by SGD),
the embedding projection of the authors' ``HRNet_W48_Proto`` and the two LayerNorms they use.
:class:`ProtoSegSegmentor` swaps it in for the final classifier of any segmentor of the model
contract, keeping its backbone, decode head and auxiliary head. The tensor a regularizer sees as
``features`` is the L2-normalised pixel embedding, the input of the prototype similarities.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from semantic_anchors._model_checks import check_features, check_probability
from semantic_anchors._registry import Registry
from semantic_anchors.regularizers.prototype_head import PrototypeClassifier

from ..layers import upsample_like
from ..output import ModelOutput
from .dense import DenseModel

__all__ = ["PrototypeClassifier", "ProtoSegSegmentor", "prototype_head_wrapper"]


class _DiscardedLogits(nn.Module):
    """Stands where the wrapped segmentor's classifier was: a one-channel view of its input,
    detached, so the segmentor's own ``forward_train`` still runs (and upsamples next to nothing)
    while its logits, which :class:`ProtoSegSegmentor` discards, cost neither parameters nor
    gradients."""

    def forward(self, x: Tensor) -> Tensor:
        return x[:, :1].detach()


def _replace_classifier(segmentor: nn.Module) -> None:
    """Put :class:`_DiscardedLogits` where ``segmentor.classifier`` is among its submodules."""
    classifier = getattr(segmentor, "classifier", None)
    for name, module in segmentor.named_modules():
        if name and module is classifier:
            parent_name, _, leaf = name.rpartition(".")
            setattr(segmentor.get_submodule(parent_name), leaf, _DiscardedLogits())
            return
    raise ValueError(
        f"segmentor: expected a model whose `classifier` is one of its submodules, got "
        f"{type(segmentor).__name__} with classifier {type(classifier).__name__}"
    )


class ProtoSegSegmentor(DenseModel):
    """A segmentor whose final classifier is a :class:`PrototypeClassifier` (ProtoSeg).

    ``segmentor`` keeps its backbone, decode head and auxiliary head; its own classifier is
    removed (its parameters would never get a gradient). Its features (decode-head output, before
    the head's dropout) go through ``Dropout2d(dropout)`` (the authors' ``cls_head`` ends with
    one) and :meth:`PrototypeClassifier.embed`; ``forward_features`` returns that unit
    embedding, which is what ``forward_train(x).features`` hands to a regularizer (ProtoSeg's
    PPC / PPD losses need it) and ``classifier(features)`` turns into logits.

    Args:
        segmentor: any dense model of the contract (``forward_features``, ``forward_train``,
            ``classifier`` among its submodules, ``feat_dim``, ``num_classes``, ``in_channels``,
            ``output_stride``, ``aux_loss_weight``), e.g. ``create_model("fcn_hr48")``.
        num_prototypes: prototypes per class (10).
        embed_dim: embedding width (default: the segmentor's ``feat_dim``).
        dropout: ``Dropout2d`` probability before the projection (authors: 0.1).
        projection_bn, feat_norm, logit_norm: see :class:`PrototypeClassifier`.

    Attributes:
        segmentor: the wrapped model (its classifier replaced).
        classifier: the :class:`PrototypeClassifier`.
        feat_dim: ``embed_dim``; ``num_classes``, ``in_channels``, ``output_stride``,
            ``aux_loss_weight``: the segmentor's.

    Shape:
        x: ``(B, in_channels, H, W)``; features ``(B, embed_dim, h, w)`` (unit vectors along
        dim 1); logits ``(B, C, H, W)`` upsampled bilinearly as the segmentor's.

    Raises:
        ValueError: a classification model, or one whose classifier is not a submodule.
        TypeError: a model without the contract's methods.

    Example:
        >>> import torch
        >>> from semantic_anchors.models import create_model
        >>> model = ProtoSegSegmentor(create_model("fcn_small", num_classes=4), num_prototypes=2)
        >>> out = model.eval().forward_train(torch.randn(1, 3, 32, 32))
        >>> out.features.shape, out.logits.shape, model.classifier.prototypes.shape
        (torch.Size([1, 64, 4, 4]), torch.Size([1, 4, 32, 32]), torch.Size([4, 2, 64]))
    """

    dense = True

    def __init__(
        self,
        segmentor: nn.Module,
        *,
        num_prototypes: int = 10,
        embed_dim: int | None = None,
        dropout: float = 0.1,
        projection_bn: bool = False,
        feat_norm: bool = True,
        logit_norm: bool = True,
    ) -> None:
        super().__init__()
        missing = [
            a for a in ("forward_features", "forward_train", "classifier", "feat_dim",
                        "num_classes", "in_channels", "output_stride", "aux_loss_weight")
            if not hasattr(segmentor, a)
        ]  # fmt: skip
        if missing:
            raise TypeError(
                f"segmentor: expected a model of the contract, {type(segmentor).__name__} lacks "
                f"{missing}"
            )
        if not getattr(segmentor, "dense", False):
            raise ValueError(
                f"segmentor: ProtoSeg needs a segmentation model (dense=True), got "
                f"{type(segmentor).__name__} with dense={getattr(segmentor, 'dense', None)}"
            )
        self.dropout_ratio = check_probability("dropout", dropout)
        self.classifier = PrototypeClassifier(
            segmentor.feat_dim, segmentor.num_classes, num_prototypes=num_prototypes,
            embed_dim=embed_dim, projection_bn=projection_bn, feat_norm=feat_norm,
            logit_norm=logit_norm,
        )  # fmt: skip
        _replace_classifier(segmentor)
        self.segmentor = segmentor
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.num_classes = segmentor.num_classes
        self.feat_dim = self.classifier.embed_dim
        self.in_channels = segmentor.in_channels
        self.output_stride = segmentor.output_stride
        self.aux_loss_weight = float(segmentor.aux_loss_weight)

    def _embed(self, features: Tensor) -> Tensor:
        return self.classifier.embed(self.dropout(features))  # (B, E, h, w)

    def forward_features(self, x: Tensor) -> Tensor:
        """The unit pixel embedding (dropout first, in training mode only).

        Shape:
            x: ``(B, in_channels, H, W)`` -> ``(B, feat_dim, h, w)``.

        Raises:
            ValueError: ``x`` is not a float ``(B, in_channels, H, W)`` tensor.
        """
        return self._embed(self.segmentor.forward_features(x))

    def forward_head(self, features: Tensor) -> Tensor:
        """Prototype logits at feature resolution.

        Shape:
            features: ``(B, feat_dim, h, w)`` -> ``(B, num_classes, h, w)``.

        Raises:
            ValueError: ``features`` is not ``(B, feat_dim, h, w)``.
        """
        check_features(features, self.feat_dim, dense=True)
        return self.classifier(features)  # (B, C, h, w)

    def forward_train(self, x: Tensor) -> ModelOutput:
        """Embedding, upsampled prototype logits and the segmentor's aux logits, one pass.

        Shape:
            x: ``(B, in_channels, H, W)`` -> features ``(B, feat_dim, h, w)``, logits and
            aux_logits ``(B, num_classes, H, W)`` (aux_logits ``None`` without an aux head).
        """
        out = self.segmentor.forward_train(x)  # its logits are the discarded one-channel map
        features = self._embed(out.features)  # (B, E, h, w)
        logits = upsample_like(self.classifier(features), x)  # (B, C, H, W)
        return ModelOutput(features, logits, out.aux_logits)


PROTOTYPE_HEADS: Registry[type[ProtoSegSegmentor]] = Registry(
    "prototype head", normalize=str, supplied=("segmentor",)
)
PROTOTYPE_HEADS.add("protoseg", ProtoSegSegmentor)


def prototype_head_wrapper(
    head: str | None, options: dict[str, Any] | None, *, model: str, task: str
) -> Callable[[nn.Module], nn.Module] | None:
    """What ``create_model(name, prototype_head=..., prototype_options=...)`` wraps with.

    Checks everything before the (possibly large) model is built.

    Args:
        head: ``"protoseg"``, or ``None`` / ``"none"`` for the model's own classifier.
        options: keyword arguments of :class:`ProtoSegSegmentor` (``num_prototypes``, ...).
        model: the registry name (for messages). task: its task.

    Returns:
        ``None`` (no wrapping) or a function ``segmentor -> ProtoSegSegmentor``.

    Raises:
        ValueError: an unknown head, options without a head, a classification model, or an
            option :class:`ProtoSegSegmentor` does not take (the message lists those it does).
    """
    if head is None or head == "none":
        if options:
            raise ValueError(
                f"prototype_options: given without prototype_head (model {model!r}), got "
                f"{sorted(options)}; set prototype_head='protoseg'"
            )
        return None
    if head not in PROTOTYPE_HEADS:
        raise ValueError(
            f"prototype_head: expected one of {list(PROTOTYPE_HEADS)} or None, got {head!r}"
        )
    if task != "segmentation":
        raise ValueError(
            f"prototype_head={head!r}: ProtoSeg replaces a segmentation classifier, but model "
            f"{model!r} is a {task} model"
        )
    options = dict(options or {})
    accepted = [p for p in inspect.signature(ProtoSegSegmentor).parameters if p != "segmentor"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(
            f"prototype_options: unknown option(s) {unknown} for prototype_head={head!r}; "
            f"expected some of {accepted}"
        )
    return functools.partial(ProtoSegSegmentor, **options)
