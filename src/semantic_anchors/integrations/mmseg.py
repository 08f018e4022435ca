"""SAR in mmsegmentation 1.x configs: segmentors registered in mmseg's ``MODELS`` registry.

Importing this module (as a config's ``custom_imports`` does) registers
``SAREncoderDecoder`` and ``SARCascadeEncoderDecoder`` (OCRNet-style). They are mmseg's
``EncoderDecoder`` / ``CascadeEncoderDecoder`` plus a :class:`SemanticAnchorRegularizer` built
from the ``sar=dict(...)`` keyword: in ``loss()`` it regularizes the decode head's pre-classifier
features (the input of ``cls_seg``, before its dropout) with the head's own classifier
``conv_seg`` and the ground-truth maps of the data samples, and adds ``loss_sar`` to mmseg's
losses. ``predict`` / ``_forward`` are mmseg's own, so inference is unchanged and costs nothing
extra; the regularizer's state (anchors, embedding, EMA semantic anchors) lives under ``sar.`` in
the model's ``state_dict``, so mmseg checkpoints keep it and resume exactly.

A config (the rest as in any mmseg config)::

    custom_imports = dict(imports=["semantic_anchors.integrations.mmseg"],
                          allow_failed_imports=False)
    model = dict(type="SAREncoderDecoder", sar=dict(lambda_p2a=0.1), ...)

The ``sar`` options are :class:`SemanticAnchorRegularizer`'s keywords (``lambda_aux``,
``lambda_p2a``, ``tau``, ``delta``, ``momentum``, ``anchors``, ``gate``, ``use_ema``,
``reweight``, ``validate``) and an optional ``feat_dim``, checked against the classifier's input
channels. ``num_classes`` and ``ignore_index`` are the decode head's.

The returned losses: ``loss_sar`` (summed by mmseg into the total) and, for the logs only,
``sar.aux`` / ``sar.p2a`` (the weighted parts), ``sar.gate_open``, ``sar.num_confident`` and
``sar.min_anchor_prob``.

Needs mmsegmentation 1.x with the full mmcv (mmseg's models import ``mmcv.ops``).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from semantic_anchors.regularizers.registry import build_regularizer
from semantic_anchors.regularizers.sar import SemanticAnchorRegularizer

__all__ = ["SARCascadeEncoderDecoder", "SAREncoderDecoder"]

_INSTALL = (
    'install it with `pip install "semantic-anchors[ref]"` (mmengine, mmcv-lite and '
    "mmsegmentation 1.2.2, the CPU reference set) or, to train with mmseg, "
    '`pip install -U openmim && mim install mmengine "mmcv>=2.0.0" && '
    'pip install "mmsegmentation>=1.0"`'
)


def _import_mmseg() -> tuple[Any, Any, Any, Any]:
    """mmseg's ``MODELS``, ``EncoderDecoder``, ``CascadeEncoderDecoder`` and ``add_prefix``.

    Raises:
        ImportError: mmseg is missing, is not 1.x, or its models cannot be imported (mmcv-lite has
            no ``mmcv.ops``); the message says what to install.
    """
    try:
        importlib.import_module("mmseg")
    except ImportError as error:
        raise ImportError(
            f"semantic_anchors.integrations.mmseg needs mmsegmentation 1.x, which could not be "
            f"imported ({error}): {_INSTALL}"
        ) from error
    try:
        registry = importlib.import_module("mmseg.registry")
        segmentors = importlib.import_module("mmseg.models.segmentors")
        utils = importlib.import_module("mmseg.utils")
    except ImportError as error:
        raise ImportError(
            f"semantic_anchors.integrations.mmseg: mmseg is installed but its 1.x models could "
            f"not be imported ({error}). mmseg 0.x is not supported, and mmseg's models import "
            f"mmcv.ops, which mmcv-lite lacks: install the full mmcv with "
            f'`mim install "mmcv>=2.0.0"`; or {_INSTALL}'
        ) from error
    return (
        registry.MODELS,
        segmentors.EncoderDecoder,
        segmentors.CascadeEncoderDecoder,
        utils.add_prefix,
    )


MODELS, EncoderDecoder, CascadeEncoderDecoder, add_prefix = _import_mmseg()

# Set by the segmentor or the head, never by the `sar` config.
_FROM_THE_MODEL = ("num_classes", "dense", "ignore_index")


def _sar_head(decode_head: nn.Module) -> nn.Module:
    """The head whose classifier SAR shares: the decode head, or a cascade's last one."""
    return decode_head[-1] if isinstance(decode_head, nn.ModuleList) else decode_head


def _check_classifier(head: nn.Module) -> nn.Conv2d:
    """The head's 1x1 ``conv_seg``, the layer whose input SAR regularizes.

    Raises:
        ValueError: the head has no 1x1 ``nn.Conv2d`` ``conv_seg`` or does not output one logit
            per class.
    """
    name = type(head).__name__
    classifier = getattr(head, "conv_seg", None)
    if not isinstance(classifier, nn.Conv2d) or classifier.kernel_size != (1, 1):
        found = "none" if classifier is None else f"a {type(classifier).__name__}"
        if isinstance(classifier, nn.Conv2d):
            found = f"an nn.Conv2d with kernel_size {classifier.kernel_size}"
        raise ValueError(
            f"SAR needs the pre-classifier features of the decode head, read at the input of its "
            f"1x1 classifier `conv_seg` (mmseg's BaseDecodeHead: FCNHead, ASPPHead, PSPHead, "
            f"UPerHead, SegformerHead, OCRHead, ...); decode head {name} has {found} as "
            f"`conv_seg`, so it has no pre-classifier feature access"
        )
    num_classes = getattr(head, "num_classes", classifier.out_channels)
    if classifier.out_channels != num_classes:
        raise ValueError(
            f"SAR needs one logit per class from the classifier: decode head {name}.conv_seg "
            f"outputs {classifier.out_channels} channel(s) for num_classes={num_classes} "
            f"(binary out_channels=1 heads are not supported: use out_channels=num_classes)"
        )
    return classifier


def _build_sar(head: nn.Module, options: Mapping[str, Any] | None) -> SemanticAnchorRegularizer:
    """The regularizer for ``head`` from the config's ``sar`` options.

    Raises:
        ValueError: an option the model sets, an unknown option, or a ``feat_dim`` that is not
            the classifier's number of input channels.
    """
    options = dict(options or {})
    classifier = _check_classifier(head)
    fixed = sorted(set(options) & set(_FROM_THE_MODEL))
    if fixed:
        raise ValueError(
            f"`sar` option(s) {fixed} come from the decode head ({type(head).__name__}: "
            f"num_classes={classifier.out_channels}, ignore_index="
            f"{getattr(head, 'ignore_index', 255)}); remove them from the sar config"
        )
    feat_dim = options.pop("feat_dim", None)
    if feat_dim is not None and feat_dim != classifier.in_channels:
        raise ValueError(
            f"`sar.feat_dim`={feat_dim} does not match the decode head: "
            f"{type(head).__name__}.conv_seg takes {classifier.in_channels} channels (the "
            f"head's `channels`); set feat_dim={classifier.in_channels} or leave it out"
        )
    sar = build_regularizer(
        "sar",
        classifier.out_channels,
        classifier.in_channels,
        dense=True,
        ignore_index=getattr(head, "ignore_index", 255),
        **options,
    )
    assert isinstance(sar, SemanticAnchorRegularizer)
    return sar


@contextmanager
def _classifier_inputs(head: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Record, while open, what ``head.cls_seg`` received on each call (its pre-dropout input).

    A pre-hook on ``conv_seg`` sees every classification; a pre-hook on the head's ``dropout``
    (mmseg's ``cls_seg`` runs ``dropout`` then ``conv_seg``) supplies the features before dropout.
    """
    recorded: list[torch.Tensor] = []
    before_dropout: list[torch.Tensor] = []

    def at_dropout(module: nn.Module, args: tuple[Any, ...]) -> None:
        before_dropout[:] = list(args[:1])

    def at_classifier(module: nn.Module, args: tuple[Any, ...]) -> None:
        features = args[0]  # (B, D, h, w), after dropout when the head has one
        if before_dropout and before_dropout[0].shape == features.shape:
            features = before_dropout[0]  # (B, D, h, w), before dropout
        before_dropout.clear()
        recorded.append(features)

    handles = [head.conv_seg.register_forward_pre_hook(at_classifier)]
    dropout = getattr(head, "dropout", None)
    if isinstance(dropout, nn.Module):
        handles.append(dropout.register_forward_pre_hook(at_dropout))
    try:
        yield recorded
    finally:
        for handle in handles:
            handle.remove()


class _SARLossMixin:
    """Adds SAR's losses to ``_decode_head_forward_train`` of an mmseg segmentor."""

    decode_head: nn.Module
    sar: SemanticAnchorRegularizer

    def _init_sar(self, options: Mapping[str, Any] | None) -> None:
        self.sar = _build_sar(_sar_head(self.decode_head), options)

    def _decode_head_forward_train(self, inputs: Any, data_samples: list[Any]) -> dict[str, Any]:
        """mmseg's decode-head losses plus ``loss_sar`` and the SAR statistics for the logs.

        Raises:
            RuntimeError: the decode head did not classify exactly once in its ``loss()``, so the
                features SAR regularizes are not defined.
        """
        head = _sar_head(self.decode_head)
        with _classifier_inputs(head) as recorded:
            losses = super()._decode_head_forward_train(inputs, data_samples)  # type: ignore[misc]
        if len(recorded) != 1:
            raise RuntimeError(
                f"SAR reads the input of the decode head's classifier, but "
                f"{type(head).__name__}.conv_seg ran {len(recorded)} times in its loss() "
                f"(expected once, through cls_seg)"
            )
        labels = torch.stack([sample.gt_sem_seg.data for sample in data_samples])  # (B, 1, H, W)
        losses["loss_sar"] = self.sar(recorded[0], labels, head.conv_seg)
        stats = {
            key.removeprefix("loss_"): value.float()
            for key, value in self.sar.last_stats_tensors.items()
        }
        losses.update(add_prefix(stats, "sar"))
        return losses


@MODELS.register_module()
class SAREncoderDecoder(_SARLossMixin, EncoderDecoder):
    """mmseg's ``EncoderDecoder`` trained with Semantic Anchor Regularization.

    Args:
        *args: mmseg ``EncoderDecoder`` arguments (``backbone``, ``decode_head``, ...).
        sar: :class:`~semantic_anchors.SemanticAnchorRegularizer` keywords and an optional
            ``feat_dim``; ``None`` or ``{}`` for the paper's defaults.
        **kwargs: mmseg ``EncoderDecoder`` keyword arguments.

    Attributes:
        sar: the regularizer (its state is in ``state_dict()`` under ``sar.``).

    Raises:
        ValueError: the decode head has no 1x1 ``conv_seg`` classifier with one output per class,
            ``sar.feat_dim`` is not its number of input channels, or a ``sar`` option is unknown
            or set by the head (``num_classes``, ``ignore_index``, ``dense``).

    Example:
        In an mmseg config (``docs/models.md``, "SAR in mmseg 1.x configs")::

            custom_imports = dict(imports=["semantic_anchors.integrations.mmseg"],
                                  allow_failed_imports=False)
            model = dict(type="SAREncoderDecoder", sar=dict(lambda_p2a=0.1))
    """

    def __init__(self, *args: Any, sar: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_sar(sar)


@MODELS.register_module()
class SARCascadeEncoderDecoder(_SARLossMixin, CascadeEncoderDecoder):
    """mmseg's ``CascadeEncoderDecoder`` (OCRNet) with SAR on the last decode head.

    Args:
        *args: mmseg ``CascadeEncoderDecoder`` arguments (``num_stages``, ``backbone``, ...).
        sar: as for :class:`SAREncoderDecoder`.
        **kwargs: mmseg ``CascadeEncoderDecoder`` keyword arguments.

    Attributes:
        sar: the regularizer, sharing ``decode_head[-1].conv_seg``.

    Raises:
        ValueError: as :class:`SAREncoderDecoder`, for the last decode head.
    """

    def __init__(self, *args: Any, sar: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_sar(sar)
