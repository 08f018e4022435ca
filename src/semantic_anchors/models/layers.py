"""Small building blocks shared by backbones and heads."""

from __future__ import annotations

from torch import Tensor, nn

from semantic_anchors.functional.resize import upsample_like  # re-exported: its old home

__all__ = ["ConvBNReLU", "init_conv_bn", "upsample_like"]


class ConvBNReLU(nn.Module):
    """``Conv2d (no bias) -> BatchNorm2d -> ReLU``, with mmseg ``ConvModule`` key names.

    The children are named ``conv``, ``bn`` and ``activate`` so that state-dict keys read like
    mmseg's (``decode_head.convs.0.conv.weight``, ``decode_head.convs.0.bn.running_mean``).

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: square kernel size.
        stride: convolution stride.
        dilation: convolution dilation; the padding keeps the size ("same" for stride 1).

    Shape:
        x: ``(B, in_channels, H, W)`` -> ``(B, out_channels, H / stride, W / stride)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        *,
        stride: int = 1,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        padding = dilation * (kernel_size - 1) // 2
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            bias=False,
        )
        self.bn = nn.BatchNorm2d(out_channels)
        self.activate = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.activate(self.bn(self.conv(x)))  # (B, out_channels, H', W')


def init_conv_bn(module: nn.Module) -> None:
    """Kaiming-normal (fan_out, ReLU) convolutions, unit-weight / zero-bias norms.

    This is the initialisation of torchvision's ResNet and mmcv's ``ConvModule``; apply it with
    ``module.apply(init_conv_bn)``.
    """
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm, nn.SyncBatchNorm)):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
