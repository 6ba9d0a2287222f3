"""Backbones: typed descriptions of architectures (``--model.backbone``) that build networks
returning pooled features. ResNets and WideResNets are rotaux's own (torchvision's classes for
the ResNets); ViT, Swin, ConvNeXt and any other model by name come from timm.

A new family is a :class:`Backbone` subclass in a file of its own, imported here so that
``--model.backbone <ClassName>`` finds it.
"""

from rotaux.backbones.base import Backbone, backbone_from_record
from rotaux.backbones.resnet import ResNet
from rotaux.backbones.timm_model import ConvNeXt, Swin, TimmModel, ViT
from rotaux.backbones.wide_resnet import WideResNet

BACKBONES: tuple[type[Backbone], ...] = (ResNet, WideResNet, ViT, Swin, ConvNeXt, TimmModel)
"""Every backbone family rotaux ships; the tests and the throughput benchmark read it."""

__all__ = [
    "BACKBONES",
    "Backbone",
    "ConvNeXt",
    "ResNet",
    "Swin",
    "TimmModel",
    "ViT",
    "WideResNet",
    "backbone_from_record",
]
