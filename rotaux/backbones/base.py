"""What every backbone is: a typed description of an architecture that builds the network.

A :class:`Backbone` is a frozen dataclass of architecture options (``ResNet(name="resnet50")``,
``ViT(size="small", patch_size=16)``). Methods take one as ``--model.backbone``; the checkpoint's
architecture record, ``rotaux export``, ``LinearEval``, the kNN monitor and the probe all rebuild
the network from that same description (:meth:`Backbone.record` and :func:`backbone_from_record`),
so a new family needs no change anywhere else. Adding one is a new file with a subclass plus its
import in :mod:`rotaux.backbones`.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

import torch
from torch import nn

from rotaux.errors import RotauxError


class Backbone:
    """Base of the backbone descriptions. Subclasses are frozen dataclasses whose fields are the
    architecture's options, and implement :meth:`build`.

    The network that :meth:`build` returns maps images ``(B, C, H, W)`` to pooled features
    ``(B, num_features)`` and has an integer attribute ``num_features``.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # a model built in Python keeps its Backbone in the checkpoint's hyperparameters, which
        # Lightning loads with torch.load(weights_only=True)
        torch.serialization.add_safe_globals([cls])

    def build(self) -> nn.Module:
        """A randomly initialised network of this architecture."""
        raise NotImplementedError(f"{type(self).__name__} must implement build().")

    @property
    def in_channels(self) -> int:
        """Channels of the input images (3 unless a subclass says otherwise)."""
        return 3

    def check_input_size(self, size: int) -> None:
        """Raise :class:`~rotaux.errors.RotauxError` if square crops of side ``size`` cannot go
        through this network (for example a ViT whose patch size does not divide them). The data
        module calls it for every crop size before training starts."""

    def no_weight_decay(self, network: nn.Module) -> set[str]:
        """Names of ``network``'s parameters that must not be weight-decayed beyond the biases
        and normalisation parameters, which never are (a ViT's position embedding and CLS
        token)."""
        return set()

    def source_library(self) -> str:
        """The library whose model class the exported weights load into with ``strict=True``."""
        return "rotaux"

    def load_snippet(self, weights_file: str) -> str:
        """Python lines that rebuild this network in :meth:`source_library` and load
        ``weights_file`` (an exported ``state_dict``) into it with ``strict=True``."""
        return (
            "from rotaux.export import load_exported_backbone\n"
            "model = load_exported_backbone('<export folder>')"
        )

    def build_in_source_library(self) -> nn.Module:
        """The network built by :meth:`source_library`'s own constructor, as :meth:`load_snippet`
        does it (the export tests load exported weights into it)."""
        return self.build()

    def record(self) -> dict[str, Any]:
        """``{"class_path", "init_args"}``: what checkpoints and exports store, and what
        ``--model.backbone`` accepts."""
        cls = type(self)
        return {
            "class_path": f"{cls.__module__}.{cls.__qualname__}",
            "init_args": {field.name: getattr(self, field.name) for field in _fields(self)},
        }


def _fields(backbone: Backbone) -> tuple[dataclasses.Field, ...]:
    if not dataclasses.is_dataclass(backbone):
        raise TypeError(f"{type(backbone).__name__} must be a dataclass to describe a backbone.")
    return dataclasses.fields(backbone)


def backbone_from_record(record: dict[str, Any]) -> Backbone:
    """The :class:`Backbone` that :meth:`Backbone.record` wrote, imported by its class path."""
    class_path = record.get("class_path", "")
    module_name, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError) as error:
        raise RotauxError(
            f"Cannot import the backbone class {class_path!r} named in the checkpoint ({error}). "
            "Install or put on PYTHONPATH the package that defines it."
        ) from error
    if not (isinstance(cls, type) and issubclass(cls, Backbone)):
        raise RotauxError(f"{class_path!r} is not a rotaux Backbone class.")
    init_args = dict(record.get("init_args", {}))
    for field in dataclasses.fields(cls):
        # JSON and YAML have no tuples
        if isinstance(init_args.get(field.name), list) and "tuple" in str(field.type):
            init_args[field.name] = tuple(init_args[field.name])
    try:
        return cls(**init_args)
    except TypeError as error:
        raise RotauxError(f"The recorded options do not fit {class_path}: {error}") from error


def legacy_resnet_record(architecture: dict[str, Any]) -> dict[str, Any]:
    """The backbone record of a checkpoint written before backbones were descriptions (rotaux
    0.1: ``{"backbone": "resnet18", "cifar_stem": ..., "backbone_width": ...}``)."""
    return {
        "class_path": "rotaux.backbones.resnet.ResNet",
        "init_args": {
            "name": architecture["backbone"],
            "cifar_stem": architecture["cifar_stem"],
            "width": architecture["backbone_width"],
        },
    }
