"""The model contract for every registered classifier (and a few variants)."""

from __future__ import annotations

import pytest

from tests._helpers.contract import ModelContractTests


class ClassifierTests(ModelContractTests):
    dense = False


class TestSmallCNN(ClassifierTests):
    model_name = "small_cnn"
    feat_dim = 128
    input_shape = (4, 3, 32, 32)


class TestSmallCNNFashion(ClassifierTests):
    model_name = "small_cnn"
    model_kwargs = {"in_channels": 1}
    feat_dim = 128
    input_shape = (4, 1, 28, 28)


class TestSmallCNN64(ClassifierTests):
    model_name = "small_cnn"
    model_kwargs = {"drop_rate": 0.2}
    feat_dim = 128
    input_shape = (2, 3, 64, 64)


class TestResNet32Cifar(ClassifierTests):
    model_name = "resnet32_cifar"
    feat_dim = 64
    input_shape = (2, 3, 32, 32)


class TestResNet18(ClassifierTests):
    model_name = "resnet18"
    feat_dim = 512


class TestResNet18Fashion(ClassifierTests):
    model_name = "resnet18"
    model_kwargs = {"in_channels": 1, "deep_stem": True}
    feat_dim = 512
    input_shape = (2, 1, 28, 28)


class TestResNet34(ClassifierTests):
    model_name = "resnet34"
    feat_dim = 512
    input_shape = (2, 3, 32, 32)


class TestResNet50(ClassifierTests):
    model_name = "resnet50"
    feat_dim = 2048
    input_shape = (2, 3, 32, 32)


@pytest.mark.slow
class TestResNet101(ClassifierTests):
    model_name = "resnet101"
    feat_dim = 2048
    input_shape = (2, 3, 32, 32)
