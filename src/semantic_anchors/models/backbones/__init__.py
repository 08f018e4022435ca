"""Backbones: torchvision-compatible ResNets, HRNetV2 (mmseg keys), the CIFAR ResNet-32, a small CNN."""

from .hrnet import HRNet, hrnetv2_w18, hrnetv2_w48
from .resnet import BasicBlock, Bottleneck, ResNet, resnet18, resnet34, resnet50, resnet101
from .resnet_cifar import CifarBasicBlock, NormedLinear, ResNetCifar, resnet32_cifar
from .small import SmallCNN, small_cnn

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "CifarBasicBlock",
    "HRNet",
    "NormedLinear",
    "ResNet",
    "ResNetCifar",
    "SmallCNN",
    "hrnetv2_w18",
    "hrnetv2_w48",
    "resnet18",
    "resnet32_cifar",
    "resnet34",
    "resnet50",
    "resnet101",
    "small_cnn",
]
