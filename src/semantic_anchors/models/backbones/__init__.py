"""Backbones: torchvision-compatible ResNets, the CIFAR ResNet-32 and a small CNN."""

from .resnet import BasicBlock, Bottleneck, ResNet, resnet18, resnet34, resnet50, resnet101
from .resnet_cifar import CifarBasicBlock, NormedLinear, ResNetCifar, resnet32_cifar
from .small import SmallCNN, small_cnn

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "CifarBasicBlock",
    "NormedLinear",
    "ResNet",
    "ResNetCifar",
    "SmallCNN",
    "resnet18",
    "resnet32_cifar",
    "resnet34",
    "resnet50",
    "resnet101",
    "small_cnn",
]
