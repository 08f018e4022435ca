"""HRNetV2 (W18 / W48) backbone with mmsegmentation's state-dict keys.

The stem (two stride-2 3x3 conv-BN-ReLU, ``conv1/bn1/conv2/bn2``), ``layer1`` (four Bottlenecks,
256 channels), then stages 2-4 of :class:`~.hrnet_fusion.HRModule` with 2, 3 and 4 parallel
branches at strides 4, 8, 16, 32, joined by ``transition1..3``. Keys and shapes equal those of
mmseg's ``HRNet`` with the ``hrnetv2_w18`` / ``hrnetv2_w48`` configs, so mmseg segmentor
checkpoints (``backbone.*``) and the ImageNet weights its configs start from
(``open-mmlab://msra/hrnetv2_w18`` / ``_w48``, saved locally) load as they are.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from semantic_anchors._model_checks import check_int

from ..classifier import ClassificationModel
from ..io.pretrained import load_pretrained
from ..layers import init_conv_bn
from .hrnet_fusion import HRModule, make_branch, make_transition
from .resnet import BasicBlock, Bottleneck

__all__ = ["HRNet", "HRStage", "hrnetv2_config", "hrnetv2_w18", "hrnetv2_w48"]

_BLOCKS = {"BASIC": BasicBlock, "BOTTLENECK": Bottleneck}
# Parts of HRNet's ImageNet classifier (not of the segmentation backbone) that a checkpoint of
# the classification model may carry; the segmentation backbone ignores them, as mmseg does.
_CLASSIFIER_PREFIXES = ("incre_modules.", "downsamp_modules.", "final_layer.", "classifier.")


@dataclass(frozen=True)
class HRStage:
    """One stage of HRNet (mmseg's ``extra['stageN']``).

    Attributes:
        num_modules: :class:`HRModule` repeated in the stage (one for stage 1, i.e. ``layer1``).
        block: ``"BASIC"`` or ``"BOTTLENECK"``.
        num_blocks: residual blocks per branch.
        num_channels: block width per branch.
    """

    num_modules: int
    block: str
    num_blocks: tuple[int, ...]
    num_channels: tuple[int, ...]

    @property
    def out_channels(self) -> tuple[int, ...]:
        return tuple(c * _BLOCKS[self.block].expansion for c in self.num_channels)


def hrnetv2_config(width: int) -> tuple[HRStage, HRStage, HRStage, HRStage]:
    """The four stages of HRNetV2-W``width`` (18 and 48 are mmseg's; branches ``w * 2**i``)."""
    check_int("width", width)
    widths = tuple(width * 2**i for i in range(4))
    return (
        HRStage(1, "BOTTLENECK", (4,), (64,)),
        HRStage(1, "BASIC", (4, 4), widths[:2]),
        HRStage(4, "BASIC", (4, 4, 4), widths[:3]),
        HRStage(3, "BASIC", (4, 4, 4, 4), widths),
    )


class HRNet(ClassificationModel):
    """HRNetV2 backbone: four parallel branches kept at strides 4, 8, 16, 32.

    Headless only (``num_classes=0``): HRNet's ImageNet classifier (``incre_modules`` ...) is no
    part of the segmentation backbone; segmentors read :meth:`forward_stages`. The inherited
    ``forward_features`` pools the stride-32 branch.

    Args:
        stages: the four :class:`HRStage` (see :func:`hrnetv2_config`).
        num_classes: must be 0.
        in_channels: image channels.
        pretrained: local checkpoint of mmseg's ``HRNet`` (e.g. ``hrnetv2_w48-d2186c55.pth`` of
            ``open-mmlab://msra/hrnetv2_w48``); keys of HRNet's ImageNet classifier are ignored, a
            3-channel first convolution is adapted to ``in_channels``.

    Attributes:
        stage_channels: channels of the four branches, e.g. ``(18, 36, 72, 144)`` for W18.
        stage_strides: ``(4, 8, 16, 32)``.
        output_stride: 32 (the lowest-resolution branch).

    Shape:
        x: ``(B, in_channels, H, W)``; ``forward_stages``:
        ``[(B, stage_channels[i], ceil(H / s_i), ceil(W / s_i))]`` for ``s = (4, 8, 16, 32)``.

    Raises:
        ValueError: ``num_classes != 0``, stages that do not chain, or a checkpoint that does not
            match (listing missing / unexpected keys).
        FileNotFoundError: ``pretrained`` does not exist.

    Example:
        >>> import torch
        >>> backbone = hrnetv2_w18()
        >>> [tuple(s.shape) for s in backbone.forward_stages(torch.randn(1, 3, 64, 64))]
        [(1, 18, 16, 16), (1, 36, 8, 8), (1, 72, 4, 4), (1, 144, 2, 2)]
    """

    stage_strides = (4, 8, 16, 32)
    output_stride = 32

    def __init__(
        self,
        stages: Sequence[HRStage],
        num_classes: int = 0,
        *,
        in_channels: int = 3,
        pretrained: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__()
        if num_classes != 0:
            raise ValueError(
                f"num_classes: HRNet is a headless backbone here, expected 0, got {num_classes!r}"
            )
        if len(stages) != 4 or len(stages[0].num_channels) != 1:
            raise ValueError(
                "stages: expected four HRStage, the first with one branch, got "
                f"{[len(s.num_channels) for s in stages]} branches"
            )
        for index, stage in enumerate(stages):
            if stage.block not in _BLOCKS or len(stage.num_blocks) != len(stage.num_channels):
                raise ValueError(
                    f"stages[{index}]: expected a block in {sorted(_BLOCKS)} and one num_blocks "
                    f"entry per branch, got {stage}"
                )
        self.in_channels = check_int("in_channels", in_channels)
        self.stages = tuple(stages)

        self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = nn.Conv2d(64, 64, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        first = stages[0]
        self.layer1 = make_branch(
            _BLOCKS[first.block], first.num_blocks[0], 64, first.num_channels[0]
        )
        previous = first.out_channels
        for number, stage in enumerate(stages[1:], start=2):
            setattr(self, f"transition{number - 1}", make_transition(previous, stage.out_channels))
            modules = [
                HRModule(
                    _BLOCKS[stage.block],
                    stage.num_blocks,
                    stage.out_channels,
                    stage.num_channels,
                )
                for _ in range(stage.num_modules)
            ]
            setattr(self, f"stage{number}", nn.Sequential(*modules))
            previous = stage.out_channels
        self.stage_channels = previous
        self._build_head(0, 0.0, classifier_name="classifier")

        self.apply(init_conv_bn)
        if pretrained is not None:
            self.load_pretrained(pretrained)

    def load_pretrained(self, path: str | os.PathLike[str]) -> None:
        """Loads a local mmseg-format HRNet checkpoint (see the ``pretrained`` argument).

        Raises:
            FileNotFoundError: ``path`` does not exist.
            ValueError: unreadable file or keys that do not match (listed in the message).
        """
        load_pretrained(
            self,
            path,
            skip_prefixes=_CLASSIFIER_PREFIXES,
            first_conv="conv1.weight",
            hint="Expected an mmseg-format HRNetV2 state dict (conv1, layer1, transition1, ...) "
            f"of width {self.stage_channels[0]}.",
        )

    def forward_stages(self, x: Tensor) -> list[Tensor]:
        """The four branches after stage 4, from high to low resolution.

        Shape:
            x: ``(B, in_channels, H, W)`` -> ``[(B, stage_channels[i], H / s_i, W / s_i)]`` with
            ``s = (4, 8, 16, 32)`` (sizes rounded up).
        """
        x = self.relu(self.bn1(self.conv1(x)))  # (B, 64, H/2, W/2)
        x = self.relu(self.bn2(self.conv2(x)))  # (B, 64, H/4, W/4)
        branches = [self.layer1(x)]  # [(B, 256, H/4, W/4)]
        for number in range(2, 5):
            transition = getattr(self, f"transition{number - 1}")
            inputs = []
            for i, layer in enumerate(transition):
                # a new branch starts from the lowest resolution so far (as mmseg)
                source = branches[i] if i < len(branches) else branches[-1]
                inputs.append(source if layer is None else layer(source))
            branches = getattr(self, f"stage{number}")(inputs)  # [(B, C_i, H/4/2^i, W/4/2^i)]
        return branches


def hrnetv2_w18(**kwargs: Any) -> HRNet:
    """HRNetV2-W18 backbone (9,562,260 parameters); keyword arguments of :class:`HRNet`."""
    return HRNet(hrnetv2_config(18), **kwargs)


def hrnetv2_w48(**kwargs: Any) -> HRNet:
    """HRNetV2-W48 backbone (65,325,120 parameters); keyword arguments of :class:`HRNet`."""
    return HRNet(hrnetv2_config(48), **kwargs)
