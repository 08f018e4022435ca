"""``ClassificationModel``: the model contract for image classifiers.

Subclasses build their stages and implement :meth:`ClassificationModel.forward_stages`; this
class turns them into pooled features, logits and :class:`~semantic_anchors.models.ModelOutput`.
With ``num_classes=0`` a subclass is a headless backbone: ``forward_head`` returns the pooled
features unchanged (as timm does), and segmentors use its ``forward_stages``.
"""

from __future__ import annotations

from torch import Tensor, nn

from semantic_anchors._model_checks import (
    check_features,
    check_images,
    check_int,
    check_probability,
)

from .output import ModelOutput

__all__ = ["ClassificationModel", "VectorModel"]


class VectorModel(nn.Module):
    """Base of the image classifiers: subclasses give ``forward_features`` (the ``(B, D)``
    vector the classifier reads) and ``forward_head``; ``forward`` and ``forward_train`` follow,
    the same for the zoo's CNNs and the ``transformers`` models."""

    dense = False

    def forward_features(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_head(self, features: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        """Logits.

        Shape:
            x: ``(B, in_channels, H, W)`` -> ``(B, num_classes)``.

        Raises:
            ValueError: ``x`` is not a float ``(B, in_channels, H, W)`` tensor.
        """
        return self.forward_head(self.forward_features(x))

    def forward_train(self, x: Tensor) -> ModelOutput:
        """Features and logits from one pass (``aux_logits`` is ``None``).

        Shape:
            x: ``(B, in_channels, H, W)`` -> features ``(B, D)``, logits ``(B, num_classes)``.

        Raises:
            ValueError: ``x`` is not a float ``(B, in_channels, H, W)`` tensor.
        """
        features = self.forward_features(x)  # (B, D)
        return ModelOutput(features, self.forward_head(features), None)


class ClassificationModel(VectorModel):
    """Base class of the classifiers (ResNet, CIFAR ResNet, small CNN).

    Subclasses set ``self.in_channels``, ``self.stage_channels`` and ``self.output_stride``,
    build their stages, then call :meth:`_build_head`.

    Attributes:
        num_classes: number of classes (0: headless backbone).
        feat_dim: dimension ``D`` of the pooled features, the last stage's channels.
        dense: ``False`` (one prediction per image).
        aux_loss_weight: ``0.0`` (no auxiliary head).
        stage_channels: channels of each stage's output (``forward_stages``).
        output_stride: input size / last stage size.
        classifier: the final ``nn.Linear`` mapping features to logits.

    Shape:
        x: ``(B, in_channels, H, W)``; features: ``(B, D)``; logits: ``(B, num_classes)``.
    """

    aux_loss_weight = 0.0
    in_channels: int
    stage_channels: tuple[int, ...]
    output_stride: int

    def _build_head(self, num_classes: int, drop_rate: float, classifier_name: str) -> None:
        """Adds pooling, dropout and the classifier (stored under ``classifier_name``).

        Raises:
            ValueError: ``num_classes < 0`` or ``drop_rate`` outside ``[0, 1)``.
        """
        self.num_classes = check_int("num_classes", num_classes, minimum=0)
        self.feat_dim = self.stage_channels[-1]
        self.drop_rate = check_probability("drop_rate", drop_rate)
        self._classifier_name = classifier_name
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.head_drop = nn.Dropout(self.drop_rate)
        head = nn.Linear(self.feat_dim, num_classes) if num_classes > 0 else nn.Identity()
        setattr(self, classifier_name, head)

    @property
    def classifier(self) -> nn.Module:
        """The final ``nn.Linear`` (``nn.Identity`` for a headless backbone)."""
        return getattr(self, self._classifier_name)

    def forward_stages(self, x: Tensor) -> list[Tensor]:
        """Returns the output of every stage, from high to low resolution.

        Shape:
            x: ``(B, in_channels, H, W)`` -> ``[(B, stage_channels[i], h_i, w_i), ...]``.
        """
        raise NotImplementedError

    def forward_features(self, x: Tensor) -> Tensor:
        """Pooled features of the last stage, right before dropout and classifier.

        Shape:
            x: ``(B, in_channels, H, W)`` -> ``(B, feat_dim)``.

        Raises:
            ValueError: ``x`` is not a float ``(B, in_channels, H, W)`` tensor.
        """
        check_images(x, self.in_channels)
        last = self.forward_stages(x)[-1]  # (B, D, h, w)
        return self.avgpool(last).flatten(1)  # (B, D)

    def forward_head(self, features: Tensor) -> Tensor:
        """Dropout (training only, ``drop_rate``) then classifier.

        Shape:
            features: ``(B, feat_dim)`` -> ``(B, num_classes)`` (``(B, feat_dim)`` if headless).

        Raises:
            ValueError: ``features`` is not ``(B, feat_dim)``.
        """
        check_features(features, self.feat_dim, dense=False)
        return self.classifier(self.head_drop(features))  # (B, C)
