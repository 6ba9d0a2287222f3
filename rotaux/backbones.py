"""ResNet backbones that return pooled features.

The networks are torchvision ResNets, so the parameter names of a backbone are exactly those of
``torchvision.models.resnet18/50`` (without ``fc``): an exported state dict loads into the
torchvision model with ``strict=True`` once ``fc`` is replaced by ``nn.Identity``.

``width`` shrinks every stage proportionally (64 is torchvision's ResNet; 16 costs about 1/16 of
the compute). Small widths exist so that tests and CPU runs finish in seconds or minutes; they
are not meant for reporting results.
"""

from __future__ import annotations

from typing import Literal

from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

BackboneName = Literal["resnet18", "resnet50"]

_ARCHITECTURES: dict[str, tuple[type[BasicBlock] | type[Bottleneck], list[int]]] = {
    "resnet18": (BasicBlock, [2, 2, 2, 2]),
    "resnet50": (Bottleneck, [3, 4, 6, 3]),
}


class _WidthScaledResNet(ResNet):
    """A torchvision ResNet whose stem and stages have ``width`` instead of 64 base channels."""

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: list[int], width: int):
        super().__init__(block, layers)
        if width == 64:
            return
        # torchvision hard-codes 64 base channels, so rebuild the stem and stages at the new width
        # and re-apply torchvision's initialisation to them.
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
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


def build_backbone(
    name: BackboneName = "resnet18", cifar_stem: bool = False, width: int = 64
) -> ResNet:
    """Build a randomly initialised ResNet whose forward returns pooled features ``(B, F)``.

    Args:
        name: ``resnet18`` or ``resnet50``.
        cifar_stem: replace the 7x7 stride-2 stem and max-pool by a 3x3 stride-1 convolution and
            no pooling, the standard change for 32x32 inputs (SimCLR, Appendix B.9).
        width: channels of the first stage (64 in the original ResNet). Use 8 to 16 for fast tests.

    The returned module has an attribute ``num_features`` (512 * width / 64 for ResNet-18,
    2048 * width / 64 for ResNet-50).
    """
    if name not in _ARCHITECTURES:
        raise ValueError(f"Unknown backbone {name!r}; choose one of {sorted(_ARCHITECTURES)}.")
    if width < 1:
        raise ValueError(f"Backbone width must be a positive number of channels, got {width}.")
    block, layers = _ARCHITECTURES[name]
    net = _WidthScaledResNet(block, layers, width)
    if cifar_stem:
        stem_width = net.bn1.num_features
        net.conv1 = nn.Conv2d(3, stem_width, kernel_size=3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        net.maxpool = nn.Identity()
    net.num_features = 8 * width * block.expansion
    net.fc = nn.Identity()
    return net
