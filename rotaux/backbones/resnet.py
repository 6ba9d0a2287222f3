"""ResNets (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016), built from
torchvision's classes.

The parameter names are exactly those of ``torchvision.models.resnet18/34/50`` (without ``fc``):
an exported state dict loads into the torchvision model with ``strict=True`` once ``fc`` is
replaced by ``nn.Identity`` (and, for the CIFAR stem, ``conv1`` and ``maxpool`` are swapped).

``width`` shrinks every stage proportionally (64 is torchvision's ResNet; 16 costs about 1/16 of
the compute). Small widths exist so that tests and CPU runs finish in seconds or minutes; they
are not meant for reporting results.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck
from torchvision.models.resnet import ResNet as TorchvisionResNet

from rotaux.backbones.base import Backbone
from rotaux.errors import RotauxError

_LAYOUTS: dict[str, tuple[type[BasicBlock] | type[Bottleneck], list[int]]] = {
    "resnet18": (BasicBlock, [2, 2, 2, 2]),
    "resnet34": (BasicBlock, [3, 4, 6, 3]),
    "resnet50": (Bottleneck, [3, 4, 6, 3]),
}


class _WidthScaledResNet(TorchvisionResNet):
    """A torchvision ResNet whose stem and stages have ``width`` instead of 64 base channels."""

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: list[int],
        width: int,
        in_channels: int,
    ) -> None:
        super().__init__(block, layers)
        if width == 64 and in_channels == 3:
            return
        # torchvision hard-codes 64 base channels and RGB input, so rebuild the stem and stages
        # and re-apply torchvision's initialisation to them
        self.inplanes = width
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.layer1 = self._make_layer(block, width, layers[0])
        self.layer2 = self._make_layer(block, 2 * width, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 4 * width, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 8 * width, layers[3], stride=2)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)


@dataclass(frozen=True)
class ResNet(Backbone):
    """A torchvision ResNet returning pooled features (512 x width / 64 for ResNet-18/34,
    2048 x width / 64 for ResNet-50).

    Args:
        name: ``resnet18``, ``resnet34`` or ``resnet50``.
        cifar_stem: replace the 7x7 stride-2 stem and max-pool by a 3x3 stride-1 convolution and
            no pooling, the standard change for 32x32 inputs (SimCLR, Appendix B.9).
        width: channels of the first stage (64 in the original ResNet). 8 to 16 make tests and
            CPU smoke runs fast.
        channels: channels of the input images (3 for RGB; 1 for grayscale, 13 for Sentinel-2).
    """

    name: Literal["resnet18", "resnet34", "resnet50"] = "resnet18"
    cifar_stem: bool = False
    width: int = 64
    channels: int = 3

    def __post_init__(self) -> None:
        if self.name not in _LAYOUTS:
            raise RotauxError(f"Unknown ResNet {self.name!r}; choose one of {sorted(_LAYOUTS)}.")
        if self.width < 1 or self.channels < 1:
            raise RotauxError(
                f"ResNet width and channels must be positive, got width={self.width}, "
                f"channels={self.channels}."
            )

    @property
    def in_channels(self) -> int:
        return self.channels

    def build(self) -> TorchvisionResNet:
        block, layers = _LAYOUTS[self.name]
        network = _WidthScaledResNet(block, layers, self.width, self.channels)
        if self.cifar_stem:
            _use_cifar_stem(network, self.channels)
        network.num_features = 8 * self.width * block.expansion
        network.fc = nn.Identity()
        return network

    def _torchvision_compatible(self) -> bool:
        return self.width == 64

    def source_library(self) -> str:
        return "torchvision" if self._torchvision_compatible() else "rotaux"

    def load_snippet(self, weights_file: str) -> str:
        if not self._torchvision_compatible():
            return super().load_snippet(weights_file)
        lines = [f"model = torchvision.models.{self.name}(); model.fc = torch.nn.Identity()"]
        if self.channels != 3 or self.cifar_stem:
            kernel = "3, 1, 1" if self.cifar_stem else "7, 2, 3"
            lines.append(
                f"model.conv1 = torch.nn.Conv2d({self.channels}, 64, {kernel}, bias=False)"
            )
        if self.cifar_stem:
            lines.append("model.maxpool = torch.nn.Identity()")
        lines.append(f"model.load_state_dict(torch.load('{weights_file}', weights_only=True))")
        return "\n".join(lines)

    def build_in_source_library(self) -> nn.Module:
        if not self._torchvision_compatible():
            return self.build()
        network = getattr(torchvision.models, self.name)()
        network.fc = nn.Identity()
        if self.channels != 3 or self.cifar_stem:
            kernel, stride, padding = (3, 1, 1) if self.cifar_stem else (7, 2, 3)
            network.conv1 = nn.Conv2d(self.channels, 64, kernel, stride, padding, bias=False)
        if self.cifar_stem:
            network.maxpool = nn.Identity()
        return network


def _use_cifar_stem(network: TorchvisionResNet, channels: int) -> None:
    stem_width = network.bn1.num_features
    network.conv1 = nn.Conv2d(channels, stem_width, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(network.conv1.weight, mode="fan_out", nonlinearity="relu")
    network.maxpool = nn.Identity()
