"""``ModelContractTests``: the model contract, checked once per architecture.

Each ``test_*.py`` subclasses it with a ``Test...`` class that sets ``model_name`` and the
expected ``feat_dim`` / ``output_stride`` (as timm's and segmentation_models_pytorch's
per-architecture model tests do).
"""

from __future__ import annotations

import io
from typing import Any, ClassVar

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from semantic_anchors.models import ModelOutput, create_model


class ModelContractTests:
    """Base class; not collected itself (its name does not start with ``Test``)."""

    model_name: ClassVar[str]
    model_kwargs: ClassVar[dict[str, Any]] = {}
    input_shape: ClassVar[tuple[int, int, int, int]] = (2, 3, 64, 64)
    num_classes: ClassVar[int] = 5
    feat_dim: ClassVar[int]
    dense: ClassVar[bool]
    output_stride: ClassVar[int | None] = None  # checked for dense models
    has_aux: ClassVar[bool] = False

    def build(self, seed: int = 0) -> nn.Module:
        torch.manual_seed(seed)
        return create_model(self.model_name, num_classes=self.num_classes, **self.model_kwargs)

    # The class-scoped ``model`` and ``images`` fixtures live in conftest.py (built from
    # ``request.cls``): pytest no longer accepts class-scoped fixtures as instance methods.

    def labels(self, images: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = images.shape
        shape = (batch, height, width) if self.dense else (batch,)
        return torch.randint(0, self.num_classes, shape, generator=torch.Generator().manual_seed(2))

    def logits_shape(self, images: torch.Tensor) -> tuple[int, ...]:
        batch, _, height, width = images.shape
        return (batch, self.num_classes, height, width) if self.dense else (batch, self.num_classes)

    # --- attributes ---------------------------------------------------------------------------

    def test_contract_attributes(self, model: nn.Module) -> None:
        assert model.num_classes == self.num_classes
        assert model.feat_dim == self.feat_dim
        assert model.dense is self.dense
        assert model.training, "create_model returns a model in training mode"
        classifier = model.classifier
        if self.dense:
            assert isinstance(classifier, nn.Conv2d)
            assert classifier.kernel_size == (1, 1)
            assert classifier.weight.shape == (self.num_classes, self.feat_dim, 1, 1)
            assert model.output_stride == self.output_stride
        else:
            assert isinstance(classifier, nn.Linear)
            assert classifier.weight.shape == (self.num_classes, self.feat_dim)
        assert model.aux_loss_weight == (0.4 if self.has_aux else 0.0)
        assert any(p is classifier.weight for p in model.parameters())

    # --- shapes -------------------------------------------------------------------------------

    def test_forward_shape(self, model: nn.Module, images: torch.Tensor) -> None:
        model.eval()
        with torch.no_grad():
            logits = model(images)
        assert logits.shape == self.logits_shape(images)
        assert torch.isfinite(logits).all()

    def test_features_at_output_stride(self, model: nn.Module, images: torch.Tensor) -> None:
        model.eval()
        with torch.no_grad():
            features = model.forward_features(images)
        batch, _, height, width = images.shape
        if self.dense:
            stride = self.output_stride
            assert features.shape == (batch, self.feat_dim, height // stride, width // stride)
        else:
            assert features.shape == (batch, self.feat_dim)

    def test_head_is_dropout_then_classifier(self, model: nn.Module, images: torch.Tensor) -> None:
        """In eval mode, logits = classifier(features), and forward = upsampled forward_head."""
        model.eval()
        with torch.no_grad():
            features = model.forward_features(images)
            head_logits = model.forward_head(features)
            torch.testing.assert_close(head_logits, model.classifier(features))
            expected = head_logits
            if self.dense:
                assert head_logits.shape[-2:] == features.shape[-2:]
                expected = F.interpolate(
                    head_logits, size=images.shape[-2:], mode="bilinear", align_corners=False
                )
            torch.testing.assert_close(model(images), expected)

    def test_forward_train_runs_once_and_agrees(
        self, model: nn.Module, images: torch.Tensor
    ) -> None:
        model.eval()
        with torch.no_grad():
            output = model.forward_train(images)
            assert isinstance(output, ModelOutput)
            torch.testing.assert_close(output.features, model.forward_features(images))
            torch.testing.assert_close(output.logits, model(images))
        if self.has_aux:
            assert output.aux_logits is not None
            assert output.aux_logits.shape == self.logits_shape(images)
        else:
            assert output.aux_logits is None

    # --- gradients ----------------------------------------------------------------------------

    def test_every_parameter_gets_a_gradient(self, model: nn.Module, images: torch.Tensor) -> None:
        model.train()
        model.zero_grad(set_to_none=True)
        output = model.forward_train(images)
        labels = self.labels(images)
        loss = F.cross_entropy(output.logits, labels)
        if output.aux_logits is not None:
            loss = loss + model.aux_loss_weight * F.cross_entropy(output.aux_logits, labels)
        loss.backward()
        no_grad = [n for n, p in model.named_parameters() if p.grad is None]
        assert not no_grad, f"parameters without gradient: {no_grad}"
        zero = [n for n, p in model.named_parameters() if not p.grad.abs().sum() > 0]
        assert not zero, f"parameters with an all-zero gradient: {zero}"
        assert all(torch.isfinite(p.grad).all() for p in model.parameters())
        assert not any(b.requires_grad for b in model.buffers())
        model.zero_grad(set_to_none=True)

    def test_features_carry_the_graph_of_the_logits(
        self, model: nn.Module, images: torch.Tensor
    ) -> None:
        """A regularizer on ``features`` reaches the backbone (SAR's L_p2a)."""
        model.train()
        model.zero_grad(set_to_none=True)
        output = model.forward_train(images)
        assert output.features.requires_grad
        output.features.pow(2).mean().backward()
        first = next(model.parameters())
        assert first.grad is not None and first.grad.abs().sum() > 0
        model.zero_grad(set_to_none=True)

    # --- state --------------------------------------------------------------------------------

    def test_state_dict_round_trip(self, model: nn.Module, images: torch.Tensor) -> None:
        model.train()
        with torch.no_grad():
            model(images)  # move the BatchNorm statistics away from their initial values
        buffer = io.BytesIO()
        torch.save(model.state_dict(), buffer)
        buffer.seek(0)
        copy = self.build(seed=123)
        copy.load_state_dict(torch.load(buffer, weights_only=True))
        model.eval()
        copy.eval()
        with torch.no_grad():
            assert torch.equal(model(images), copy(images))
            assert torch.equal(model.forward_train(images).features, copy.forward_features(images))

    # --- bad input ----------------------------------------------------------------------------

    def test_rejects_bad_images(self, model: nn.Module, images: torch.Tensor) -> None:
        channels = images.shape[1]
        wrong = torch.randn(2, channels + 1, *images.shape[-2:])
        with pytest.raises(ValueError, match=rf"x: expected shape \(B, {channels}, H, W\)"):
            model(wrong)
        with pytest.raises(ValueError, match="x: expected shape"):
            model.forward_train(images[0])
        with pytest.raises(ValueError, match="floating point"):
            model.forward_features(images.to(torch.uint8))
        with pytest.raises(TypeError, match="x: expected a torch.Tensor"):
            model(images.numpy())

    def test_forward_head_rejects_wrong_features(self, model: nn.Module) -> None:
        shape = (2, self.feat_dim + 1, 4, 4) if self.dense else (2, self.feat_dim + 1)
        with pytest.raises(ValueError, match=rf"features: expected shape \(B, {self.feat_dim}"):
            model.forward_head(torch.randn(shape))

    # --- precision ----------------------------------------------------------------------------

    def test_bfloat16_autocast(self, model: nn.Module, images: torch.Tensor) -> None:
        model.eval()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            output = model.forward_train(images)
        assert output.logits.shape == self.logits_shape(images)
        assert torch.isfinite(output.logits.float()).all()
