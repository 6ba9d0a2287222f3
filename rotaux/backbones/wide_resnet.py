"""Wide ResNets for 32x32 images (Zagoruyko & Komodakis, "Wide Residual Networks", BMVC 2016),
in the variant of FixMatch (Sohn et al., NeurIPS 2020) that solo-learn's CIFAR backbones
``wide_resnet28w2`` and ``wide_resnet28w8`` use: pre-activation blocks, BatchNorm with momentum
0.001 and epsilon 0.001, LeakyReLU(0.1), convolutions with biases, the first block activating
before its shortcut, and no stride in the first stage. One difference: FixMatch's code feeds the
un-activated input to the first convolution of the first block of stages 2 and 3, which leaves
that block's first BatchNorm without gradient (an error under DDP without
``find_unused_parameters``); here every block convolves its activated input, the paper's
pre-activation design."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from rotaux.backbones.base import Backbone
from rotaux.errors import RotauxError

_BN_MOMENTUM = 0.001
_BN_EPS = 0.001
_LEAKY_SLOPE = 0.1


def _norm_act(channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.BatchNorm2d(channels, momentum=_BN_MOMENTUM, eps=_BN_EPS),
        nn.LeakyReLU(_LEAKY_SLOPE),
    )


class _WideBlock(nn.Module):
    """A pre-activation basic block; ``activate_shortcut`` feeds the activated input to a
    projecting shortcut (only the very first block does)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        dropout: float,
        activate_shortcut: bool,
    ) -> None:
        super().__init__()
        self.pre = _norm_act(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1)
        self.mid = _norm_act(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1)
        self.dropout = dropout
        self.shortcut = (
            None
            if in_channels == out_channels
            else nn.Conv2d(in_channels, out_channels, 1, stride, padding=0)
        )
        self.activate_shortcut = activate_shortcut

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        activated = self.pre(inputs)
        if self.shortcut is None:
            identity = inputs
        else:
            identity = self.shortcut(activated if self.activate_shortcut else inputs)
        hidden = self.mid(self.conv1(activated))
        hidden = F.dropout(hidden, p=self.dropout, training=self.training)
        return identity + self.conv2(hidden)


class WideResNetNetwork(nn.Module):
    """The network that :class:`WideResNet` builds: features ``(B, 64 * widen_factor)``."""

    def __init__(self, depth: int, widen_factor: int, dropout: float, channels: int) -> None:
        super().__init__()
        blocks_per_stage = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.num_features = widths[-1]
        self.conv1 = nn.Conv2d(channels, widths[0], 3, 1, padding=1)
        stages = []
        for stage, stride in enumerate((1, 2, 2)):
            blocks = [
                _WideBlock(
                    widths[stage] if index == 0 else widths[stage + 1],
                    widths[stage + 1],
                    stride if index == 0 else 1,
                    dropout,
                    activate_shortcut=stage == 0,
                )
                for index in range(blocks_per_stage)
            ]
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.head = _norm_act(widths[-1])
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="leaky_relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        hidden = self.head(self.stages(self.conv1(images)))
        return hidden.mean(dim=(2, 3))


@dataclass(frozen=True)
class WideResNet(Backbone):
    """WRN-``depth``-``widen_factor``: WideResNet(28, 2) (1.5M parameters, 128 features) and
    WideResNet(28, 8) (23M, 512 features) are solo-learn's CIFAR wide backbones.

    Args:
        depth: layers; ``6 n + 4`` with ``n`` blocks per stage (28: 4 blocks).
        widen_factor: channel multiplier of the three stages (16, 32, 64 times it).
        dropout: dropout rate inside each block (0 in FixMatch and solo-learn).
        channels: channels of the input images.
    """

    depth: int = 28
    widen_factor: int = 2
    dropout: float = 0.0
    channels: int = 3

    def __post_init__(self) -> None:
        if self.depth < 10 or (self.depth - 4) % 6:
            raise RotauxError(
                f"WideResNet depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, ...), got "
                f"{self.depth}."
            )
        if self.widen_factor < 1 or self.channels < 1 or not 0 <= self.dropout < 1:
            raise RotauxError(
                "WideResNet needs widen_factor >= 1, channels >= 1 and 0 <= dropout < 1."
            )

    @property
    def in_channels(self) -> int:
        return self.channels

    def build(self) -> WideResNetNetwork:
        return WideResNetNetwork(self.depth, self.widen_factor, self.dropout, self.channels)
