"""CIFAR-style ResNet-32, as in the LDAM-DRW code (the long-tail backbone of the paper's Table 10).

Three stages of five basic blocks with 16 / 32 / 64 channels on 32x32 inputs, parameter-free
"option A" shortcuts (strided identity, zero-padded channels), Kaiming-normal initialisation of
every convolution and linear layer, and an optional cosine classifier (``NormedLinear``, LDAM's
``use_norm``). Key names follow LDAM-DRW (``conv1``, ``bn1``, ``layer1.0.conv1``, ``linear``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from semantic_anchors._model_checks import check_int

from ..classifier import ClassificationModel
from ..registry import inherit_signature, register_model

__all__ = ["CifarBasicBlock", "NormedLinear", "ResNetCifar", "resnet32_cifar"]


class NormedLinear(nn.Module):
    """Cosine classifier: logits are cosines between features and class weights (LDAM-DRW).

    Shape:
        x: ``(N, in_features)`` -> ``(N, out_features)``, values in ``[-1, 1]``.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(in_features, out_features))  # (D, C)
        self.weight.data.uniform_(-1, 1).renorm_(2, 1, 1e-5).mul_(1e5)

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(x, dim=1) @ F.normalize(self.weight, dim=0)  # (N, C)


class _ZeroPadShortcut(nn.Module):
    """Strided identity with zero channels added on both sides ("option A", no parameters)."""

    def __init__(self, stride: int, extra_channels: int) -> None:
        super().__init__()
        self.stride = stride
        self.pad = (extra_channels // 2, extra_channels - extra_channels // 2)

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]  # (B, C, H/s, W/s)
        return F.pad(x, (0, 0, 0, 0, *self.pad))  # (B, C + extra, H/s, W/s)


class CifarBasicBlock(nn.Module):
    """Basic block with a parameter-free shortcut.

    Shape:
        x: ``(B, in_planes, H, W)`` -> ``(B, planes, H / stride, W / stride)``.
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = _ZeroPadShortcut(stride, planes - in_planes)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))  # (B, planes, h, w)
        out = self.bn2(self.conv2(out))  # (B, planes, h, w)
        return F.relu(out + self.shortcut(x))


class ResNetCifar(ClassificationModel):
    """CIFAR ResNet with ``6n + 2`` layers (``blocks_per_stage = n``; 5 gives ResNet-32).

    Args:
        num_classes: classes of the classifier (0: headless).
        blocks_per_stage: basic blocks in each of the three stages.
        in_channels: image channels.
        use_norm: cosine classifier ``NormedLinear`` instead of ``nn.Linear`` (LDAM loss).
        drop_rate: dropout on the pooled features before the classifier.

    Attributes:
        stage_channels: ``(16, 32, 64)``; ``feat_dim`` is 64; ``output_stride`` is 4.

    Shape:
        x: ``(B, in_channels, H, W)``; features ``(B, 64)``; logits ``(B, num_classes)``.

    Raises:
        ValueError / TypeError: bad ``num_classes``, ``blocks_per_stage``, ``in_channels`` or
            ``drop_rate``.

    Example:
        >>> import torch
        >>> model = ResNetCifar(num_classes=100)
        >>> model.forward_features(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 64])
    """

    def __init__(
        self,
        num_classes: int = 10,
        *,
        blocks_per_stage: int = 5,
        in_channels: int = 3,
        use_norm: bool = False,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        blocks = check_int("blocks_per_stage", blocks_per_stage)
        self.in_channels = check_int("in_channels", in_channels)
        self.output_stride = 4
        self.stage_channels = (16, 32, 64)
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._make_layer(16, 16, blocks, stride=1)
        self.layer2 = self._make_layer(16, 32, blocks, stride=2)
        self.layer3 = self._make_layer(32, 64, blocks, stride=2)
        self._build_head(num_classes, drop_rate, classifier_name="linear")
        if use_norm and self.num_classes > 0:
            self.linear = NormedLinear(self.feat_dim, self.num_classes)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight)

    @staticmethod
    def _make_layer(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = [CifarBasicBlock(in_planes, planes, stride)]
        layers += [CifarBasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward_stages(self, x: Tensor) -> list[Tensor]:
        """Outputs of the three stages.

        Shape:
            x: ``(B, in_channels, H, W)`` -> ``[(B, 16, H, W), (B, 32, H/2, W/2), (B, 64, H/4, W/4)]``.
        """
        x = F.relu(self.bn1(self.conv1(x)))  # (B, 16, H, W)
        c1 = self.layer1(x)  # (B, 16, H, W)
        c2 = self.layer2(c1)  # (B, 32, H/2, W/2)
        c3 = self.layer3(c2)  # (B, 64, H/4, W/4)
        return [c1, c2, c3]


@register_model(task="classification")
@inherit_signature(ResNetCifar, bound=("blocks_per_stage",))
def resnet32_cifar(num_classes: int = 10, **kwargs: Any) -> ResNetCifar:
    """CIFAR ResNet-32 of LDAM-DRW; arguments of :class:`ResNetCifar`."""
    return ResNetCifar(num_classes, blocks_per_stage=5, **kwargs)
