"""ResNet-18/34/50/101 with torchvision's state-dict keys, a deep "v1c" stem and dilation.

With ``deep_stem=False`` (default) and 1000 classes the parameters and state-dict keys are those of
``torchvision.models.resnet{18,34,50,101}``, so torchvision ImageNet weights load from a local
file with ``pretrained="resnet50.pth"``. ``deep_stem=True`` replaces the 7x7 stem by three 3x3
convolutions (32-32-64) named ``stem.0 ... stem.7`` like mmcv's ``ResNetV1c`` (the backbone of the
mmseg baselines), whose checkpoints then load the same way. ``output_stride`` 16 / 8 replaces the
stride of layer4 / layer3+layer4 by dilation (torchvision's ``replace_stride_with_dilation``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from semantic_anchors._model_checks import check_choice, check_int

from ..classifier import ClassificationModel
from ..io.pretrained import load_pretrained
from ..layers import init_conv_bn
from ..registry import inherit_signature, register_model

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "resnet18", "resnet34", "resnet50", "resnet101"]

NormLayer = Callable[[int], nn.Module]


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(
        in_planes, out_planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False
    )


def _conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34).

    Both convolutions use ``dilation`` (torchvision refuses dilation here; mmseg dilates the
    first only).

    Shape:
        x: ``(B, inplanes, H, W)`` -> ``(B, planes, H / stride, W / stride)``.
    """

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        dilation: int = 1,
        norm_layer: NormLayer = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride, dilation)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes, dilation=dilation)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)  # (B, planes, h, w)
        out = self.relu(self.bn1(self.conv1(x)))  # (B, planes, h, w)
        out = self.bn2(self.conv2(out))  # (B, planes, h, w)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 - 3x3 - 1x1 bottleneck, stride on the 3x3 ("ResNet v1.5", ResNet-50/101).

    Shape:
        x: ``(B, inplanes, H, W)`` -> ``(B, 4 * planes, H / stride, W / stride)``.
    """

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        dilation: int = 1,
        norm_layer: NormLayer = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = norm_layer(planes)
        self.conv2 = _conv3x3(planes, planes, stride, dilation)
        self.bn2 = norm_layer(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)  # (B, 4P, h, w)
        out = self.relu(self.bn1(self.conv1(x)))  # (B, P, H, W)
        out = self.relu(self.bn2(self.conv2(out)))  # (B, P, h, w)
        out = self.bn3(self.conv3(out))  # (B, 4P, h, w)
        return self.relu(out + identity)


_ARCHS: dict[int, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
}
_OUTPUT_STRIDES = (8, 16, 32)


class ResNet(ClassificationModel):
    """ResNet classifier / backbone (torchvision key names).

    Args:
        depth: 18, 34, 50 or 101.
        num_classes: classes of ``fc``; 0 builds a headless backbone (no ``fc``), as segmentors use.
        in_channels: image channels (1 for Fashion-MNIST).
        output_stride: 32 (classification), 16 (layer4 dilated) or 8 (layer3 and layer4 dilated).
        deep_stem: three 3x3 convolutions 32-32-64 instead of the 7x7 one ("ResNetV1c").
        drop_rate: dropout on the pooled features before ``fc`` (0 as in torchvision).
        zero_init_residual: zero the last BN of each block (torchvision's option).
        norm_layer: normalisation layer factory, ``nn.BatchNorm2d`` by default.
        pretrained: path of a local torchvision- (or, with ``deep_stem``, mmcv-) format checkpoint.
            ``fc.*`` is skipped when the checkpoint has no ``fc`` or one of another shape; a
            3-channel first convolution is adapted to ``in_channels``.

    Attributes:
        stage_channels: ``(64, 128, 256, 512)`` times 1 (18/34) or 4 (50/101).
        feat_dim: 512 (18/34) or 2048 (50/101).

    Shape:
        x: ``(B, in_channels, H, W)``; ``forward_stages``: four maps at strides 4, 8, 16, 32
        (capped by ``output_stride``); features ``(B, feat_dim)``; logits ``(B, num_classes)``.

    Raises:
        ValueError: bad ``depth``, ``num_classes``, ``in_channels``, ``output_stride`` or
            ``drop_rate``; a checkpoint that does not match (listing missing / unexpected keys).
        FileNotFoundError: ``pretrained`` does not exist.

    Example:
        >>> import torch
        >>> model = ResNet(18, num_classes=10, in_channels=1)
        >>> model(torch.randn(2, 1, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        depth: int = 50,
        num_classes: int = 1000,
        *,
        in_channels: int = 3,
        output_stride: int = 32,
        deep_stem: bool = False,
        drop_rate: float = 0.0,
        zero_init_residual: bool = False,
        norm_layer: NormLayer | None = None,
        pretrained: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__()
        check_choice("depth", depth, _ARCHS)
        self.in_channels = check_int("in_channels", in_channels)
        self.output_stride = check_choice("output_stride", output_stride, _OUTPUT_STRIDES)
        self.depth = depth
        self.deep_stem = bool(deep_stem)
        norm = norm_layer or nn.BatchNorm2d
        block, layers = _ARCHS[depth]

        if self.deep_stem:
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, 32, 3, stride=2, padding=1, bias=False),
                norm(32),
                nn.ReLU(inplace=True),
                nn.Conv2d(32, 32, 3, padding=1, bias=False),
                norm(32),
                nn.ReLU(inplace=True),
                nn.Conv2d(32, 64, 3, padding=1, bias=False),
                norm(64),
                nn.ReLU(inplace=True),
            )
        else:
            self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
            self.bn1 = norm(64)
            self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        self._inplanes, self._dilation = 64, 1
        self.layer1 = self._make_layer(block, 64, layers[0], 1, False, norm)
        self.layer2 = self._make_layer(block, 128, layers[1], 2, False, norm)
        self.layer3 = self._make_layer(block, 256, layers[2], 2, output_stride <= 8, norm)
        self.layer4 = self._make_layer(block, 512, layers[3], 2, output_stride <= 16, norm)
        self.stage_channels = tuple(c * block.expansion for c in (64, 128, 256, 512))
        self._build_head(num_classes, drop_rate, classifier_name="fc")

        self.apply(init_conv_bn)
        if zero_init_residual:
            for module in self.modules():
                if isinstance(module, Bottleneck):
                    nn.init.zeros_(module.bn3.weight)
                elif isinstance(module, BasicBlock):
                    nn.init.zeros_(module.bn2.weight)
        if pretrained is not None:
            self.load_pretrained(pretrained)

    def _make_layer(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        planes: int,
        blocks: int,
        stride: int,
        dilate: bool,
        norm: NormLayer,
    ) -> nn.Sequential:
        """One stage; as torchvision, a dilated stage's first block keeps the previous dilation."""
        previous_dilation = self._dilation
        if dilate:
            self._dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self._inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self._inplanes, planes * block.expansion, stride),
                norm(planes * block.expansion),
            )
        layers = [block(self._inplanes, planes, stride, downsample, previous_dilation, norm)]
        self._inplanes = planes * block.expansion
        layers += [
            block(self._inplanes, planes, dilation=self._dilation, norm_layer=norm)
            for _ in range(1, blocks)
        ]
        return nn.Sequential(*layers)

    @property
    def first_conv(self) -> str:
        """State-dict key of the first convolution's weight."""
        return "stem.0.weight" if self.deep_stem else "conv1.weight"

    def load_pretrained(self, path: str | os.PathLike[str]) -> None:
        """Loads a local checkpoint (see the ``pretrained`` argument).

        Raises:
            FileNotFoundError: ``path`` does not exist.
            ValueError: unreadable file or keys that do not match (listed in the message).
        """
        hint = (
            "A deep 'v1c' stem (deep_stem=True) needs mmcv-format 'stem.*' weights; "
            "torchvision weights need deep_stem=False."
            if self.deep_stem
            else "Expected a torchvision-format ResNet state dict."
        )
        load_pretrained(self, path, skip_prefixes=("fc.",), first_conv=self.first_conv, hint=hint)

    def forward_stages(self, x: Tensor) -> list[Tensor]:
        """Outputs of layer1..layer4.

        Shape:
            x: ``(B, in_channels, H, W)`` -> ``[(B, stage_channels[i], H / s_i, W / s_i)]`` with
            ``s = (4, 8, 16, 32)`` capped at ``output_stride``.
        """
        x = (
            self.stem(x) if self.deep_stem else self.relu(self.bn1(self.conv1(x)))
        )  # (B, 64, H/2, W/2)
        x = self.maxpool(x)  # (B, 64, H/4, W/4)
        c1 = self.layer1(x)  # (B, C1, H/4, W/4)
        c2 = self.layer2(c1)  # (B, C2, H/8, W/8)
        c3 = self.layer3(c2)  # (B, C3, H/16, W/16), H/8 at output stride 8
        c4 = self.layer4(c3)  # (B, C4, H/32, W/32), H/os below 32
        return [c1, c2, c3, c4]


@register_model(task="classification")
@inherit_signature(ResNet, bound=("depth",))
def resnet18(num_classes: int = 1000, **kwargs: Any) -> ResNet:
    """ResNet-18 (11,689,512 parameters with 1000 classes); arguments of :class:`ResNet`."""
    return ResNet(18, num_classes, **kwargs)


@register_model(task="classification")
@inherit_signature(ResNet, bound=("depth",))
def resnet34(num_classes: int = 1000, **kwargs: Any) -> ResNet:
    """ResNet-34 (21,797,672 parameters with 1000 classes); arguments of :class:`ResNet`."""
    return ResNet(34, num_classes, **kwargs)


@register_model(task="classification")
@inherit_signature(ResNet, bound=("depth",))
def resnet50(num_classes: int = 1000, **kwargs: Any) -> ResNet:
    """ResNet-50 (25,557,032 parameters with 1000 classes); arguments of :class:`ResNet`."""
    return ResNet(50, num_classes, **kwargs)


@register_model(task="classification")
@inherit_signature(ResNet, bound=("depth",))
def resnet101(num_classes: int = 1000, **kwargs: Any) -> ResNet:
    """ResNet-101 (44,549,160 parameters with 1000 classes); arguments of :class:`ResNet`."""
    return ResNet(101, num_classes, **kwargs)
