"""HRNet's multi-resolution parts: the high-resolution module and the transition layers.

An :class:`HRModule` runs its parallel branches (residual blocks at strides 4, 8, 16, 32), then
fuses them: every output branch sums all input branches, brought to its resolution by a 1x1
convolution and bilinear upsampling (lower resolutions) or by strided 3x3 convolutions (higher
ones). A transition layer (:func:`make_transition`) adapts the branches of one stage to the next
and opens the new, lower-resolution branch. Module names follow mmseg's ``HRModule`` and
``HRNet._make_transition_layer`` (``branches.i.k.*``, ``fuse_layers.i.j.*``, ``transition1.1.0.*``)
so that its checkpoints load unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from .resnet import BasicBlock, Bottleneck

__all__ = ["HRModule", "make_transition"]

Block = type[BasicBlock] | type[Bottleneck]


def _conv_bn(
    in_channels: int, out_channels: int, kernel_size: int, stride: int = 1
) -> list[nn.Module]:
    conv = nn.Conv2d(
        in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False
    )
    return [conv, nn.BatchNorm2d(out_channels)]


def make_branch(block: Block, num_blocks: int, in_channels: int, channels: int) -> nn.Sequential:
    """``num_blocks`` residual blocks at one resolution; the first projects ``in_channels``.

    Shape:
        x: ``(B, in_channels, h, w)`` -> ``(B, channels * block.expansion, h, w)``.
    """
    out_channels = channels * block.expansion
    downsample = None
    if in_channels != out_channels:
        downsample = nn.Sequential(*_conv_bn(in_channels, out_channels, 1))
    blocks = [block(in_channels, channels, downsample=downsample)]
    blocks += [block(out_channels, channels) for _ in range(1, num_blocks)]
    return nn.Sequential(*blocks)


def _fuse_path(in_channels: int, out_channels: int, steps: int) -> nn.Module | None:
    """Path from a branch to another ``steps`` resolutions lower (> 0), higher (< 0) or itself.

    Higher-resolution inputs go down by ``steps`` stride-2 3x3 conv-BN (ReLU between them, the
    last one projects to ``out_channels``); lower ones by a 1x1 conv-BN, then bilinear upsampling.
    """
    if steps == 0:
        return None
    if steps < 0:
        scale = 2 ** (-steps)
        return nn.Sequential(
            *_conv_bn(in_channels, out_channels, 1),
            nn.Upsample(scale_factor=scale, mode="bilinear", align_corners=False),
        )
    downs = [
        nn.Sequential(*_conv_bn(in_channels, in_channels, 3, stride=2), nn.ReLU(inplace=False))
        for _ in range(steps - 1)
    ]
    downs.append(nn.Sequential(*_conv_bn(in_channels, out_channels, 3, stride=2)))
    return nn.Sequential(*downs)


class HRModule(nn.Module):
    """Parallel branches of residual blocks, then the exchange between all resolutions.

    Branch ``i`` runs at stride ``4 * 2**i``. Output ``i`` is ``ReLU(sum_j path_ij(x_j))`` where
    ``path_ii`` is the identity; the upsampled paths are resized to branch ``i`` exactly, so any
    input size works.

    Args:
        block: :class:`BasicBlock` (HRNetV2 stages 2-4) or :class:`Bottleneck`.
        num_blocks: blocks per branch.
        in_channels: input channels per branch.
        channels: block width per branch (output ``channels[i] * block.expansion``).

    Attributes:
        out_channels: output channels per branch.

    Shape:
        xs: ``[(B, in_channels[i], H / 2**i, W / 2**i)]`` -> ``[(B, out_channels[i], ...)]``.

    Raises:
        ValueError: ``num_blocks``, ``in_channels`` and ``channels`` of different lengths.
    """

    def __init__(
        self,
        block: Block,
        num_blocks: Sequence[int],
        in_channels: Sequence[int],
        channels: Sequence[int],
    ) -> None:
        super().__init__()
        if not len(num_blocks) == len(in_channels) == len(channels) >= 1:
            raise ValueError(
                "num_blocks, in_channels, channels: expected one entry per branch, got "
                f"{len(num_blocks)}, {len(in_channels)}, {len(channels)}"
            )
        self.num_branches = len(channels)
        self.out_channels = tuple(c * block.expansion for c in channels)
        self.branches = nn.ModuleList(
            make_branch(block, n, c_in, c)
            for n, c_in, c in zip(num_blocks, in_channels, channels, strict=True)
        )
        self.fuse_layers = None
        if self.num_branches > 1:
            out = self.out_channels
            self.fuse_layers = nn.ModuleList(
                nn.ModuleList(_fuse_path(out[j], out[i], i - j) for j in range(self.num_branches))
                for i in range(self.num_branches)
            )
        self.relu = nn.ReLU(inplace=False)

    def forward(self, xs: Sequence[Tensor]) -> list[Tensor]:
        if len(xs) != self.num_branches:
            raise ValueError(f"xs: expected {self.num_branches} branches, got {len(xs)}")
        xs = [branch(x) for branch, x in zip(self.branches, xs, strict=True)]  # (B, C_i, h_i, w_i)
        if self.fuse_layers is None:
            return xs
        fused = []
        for i, paths in enumerate(self.fuse_layers):
            total: Tensor | None = None
            for j, path in enumerate(paths):
                if path is None:
                    y = xs[j]  # (B, C_i, h_i, w_i)
                else:
                    y = path(xs[j])  # (B, C_i, ~h_i, ~w_i)
                    if y.shape[-2:] != xs[i].shape[-2:]:  # odd sizes: x2 upsampling overshoots
                        y = F.interpolate(
                            y, size=xs[i].shape[-2:], mode="bilinear", align_corners=False
                        )
                total = y if total is None else total + y
            fused.append(self.relu(total))  # (B, C_i, h_i, w_i)
        return fused


def make_transition(previous: Sequence[int], current: Sequence[int]) -> nn.ModuleList:
    """Transition from a stage with ``previous`` branch channels to one with ``current``.

    Entry ``i`` is ``None`` when branch ``i`` keeps its channels, a 3x3 conv-BN-ReLU when they
    change, and for each new branch a chain of stride-2 3x3 conv-BN-ReLU from the lowest existing
    resolution (its last one projects to ``current[i]``).

    Raises:
        ValueError: ``current`` has fewer branches than ``previous``.
    """
    if len(current) < len(previous):
        raise ValueError(f"current: expected at least {len(previous)} branches, got {len(current)}")
    layers: list[nn.Module | None] = []
    for i, channels in enumerate(current):
        if i < len(previous):
            if channels == previous[i]:
                layers.append(None)
            else:
                layers.append(nn.Sequential(*_conv_bn(previous[i], channels, 3), nn.ReLU(True)))
            continue
        source = previous[-1]
        steps = i + 1 - len(previous)
        chain = [
            nn.Sequential(
                *_conv_bn(source, channels if k == steps - 1 else source, 3, stride=2),
                nn.ReLU(inplace=True),
            )
            for k in range(steps)
        ]
        layers.append(nn.Sequential(*chain))
    return nn.ModuleList(layers)
