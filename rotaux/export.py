"""``rotaux export``: the pretrained backbone of a checkpoint as a plain state dict.

``backbone.pt`` holds the backbone's ``state_dict`` with the parameter names of the library the
architecture comes from, so it loads with ``strict=True`` into that library's model:
``torchvision.models.resnet50()`` (with ``fc = nn.Identity()``, and the CIFAR stem swapped in
where used) for ResNets at width 64, ``timm.create_model(...)`` for ViT, Swin, ConvNeXt and other
timm models, and rotaux's own class for WideResNets and narrow ResNets. ``backbone.json``
records the architecture and the exact lines that load the weights;
:func:`load_exported_backbone` rebuilds any of them. ``backbone.pt`` loads with
``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from rotaux.architecture import Architecture, read_checkpoint
from rotaux.backbones import Backbone, backbone_from_record
from rotaux.backbones.base import legacy_resnet_record
from rotaux.errors import RotauxError

WEIGHTS_FILE = "backbone.pt"
DESCRIPTION_FILE = "backbone.json"
_PREFIX = "backbone."
_WHERE = "the .ckpt that `rotaux fit` wrote (runs/<name>/version_<n>/checkpoints/last.ckpt)"


@dataclass(frozen=True)
class PretrainedBackbone:
    """The weights of a pretrained backbone and the architecture they belong to."""

    backbone: Backbone
    method: str
    source: str
    state_dict: dict[str, torch.Tensor]

    def build(self) -> nn.Module:
        """A backbone of this architecture holding these weights (loaded with ``strict=True``)."""
        network = self.backbone.build()
        try:
            network.load_state_dict(self.state_dict)
        except RuntimeError as error:
            raise RotauxError(
                f"The backbone weights in {self.source} do not fit the architecture it records "
                f"({self.backbone}): {error}"
            ) from error
        return network


def read_checkpoint_backbone(path: str | Path) -> PretrainedBackbone:
    """The backbone of a checkpoint written by ``rotaux fit`` (the ``backbone.*`` entries of its
    state dict and its architecture record), checked to load into its architecture."""
    checkpoint = read_checkpoint(path)
    weights = {
        key[len(_PREFIX) :]: value
        for key, value in checkpoint["state_dict"].items()
        if key.startswith(_PREFIX)
    }
    if not weights:
        raise RotauxError(
            f"{path} holds no backbone: its state_dict has no 'backbone.*' entries. Pass the "
            f"checkpoint of a rotaux method (BYOL, SimCLR, ...), {_WHERE}."
        )
    architecture = Architecture.from_checkpoint(checkpoint)
    if architecture is None:
        raise RotauxError(
            f"{path} was not written by a rotaux method: it records no rotaux_architecture, so "
            f"the backbone cannot be rebuilt. Pass {_WHERE}."
        )
    backbone = PretrainedBackbone(
        backbone=architecture.backbone,
        method=architecture.method,
        source=str(Path(path).resolve()),
        state_dict=weights,
    )
    backbone.build()
    return backbone


def read_exported(directory: str | Path) -> PretrainedBackbone:
    """The backbone in a folder written by :func:`export_backbone`."""
    directory = Path(directory)
    weights_path, description_path = directory / WEIGHTS_FILE, directory / DESCRIPTION_FILE
    if not weights_path.is_file() or not description_path.is_file():
        raise RotauxError(
            f"{directory} is not an exported backbone: it must hold {WEIGHTS_FILE} and "
            f"{DESCRIPTION_FILE}, as written by `rotaux export CHECKPOINT {directory}`."
        )
    description = json.loads(description_path.read_text())
    record = description.get("backbone")
    if not isinstance(record, dict):
        # written by rotaux 0.1: name, cifar_stem and width of a ResNet
        record = legacy_resnet_record(
            {
                "backbone": description["name"],
                "cifar_stem": description["cifar_stem"],
                "backbone_width": description["width"],
            }
        )
    return PretrainedBackbone(
        backbone=backbone_from_record(record),
        method=description["method"],
        source=str(directory.resolve()),
        state_dict=torch.load(weights_path, map_location="cpu", weights_only=True),
    )


def read_pretrained(path: str | Path) -> PretrainedBackbone:
    """The backbone of a ``rotaux fit`` checkpoint file or of an exported-backbone folder."""
    if Path(path).is_dir():
        return read_exported(path)
    return read_checkpoint_backbone(path)


def export_backbone(checkpoint_path: str | Path, output_dir: str | Path) -> Path:
    """Write the backbone of a ``rotaux fit`` checkpoint to ``output_dir`` as ``backbone.pt`` (a
    plain state dict) and ``backbone.json`` (the architecture, its feature size, the method,
    the source checkpoint, the library the weights load into and the lines that load them).
    Returns ``output_dir``."""
    pretrained = read_checkpoint_backbone(checkpoint_path)
    output = Path(output_dir)
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RotauxError(f"Cannot create the output folder {output}: {error}") from error
    torch.save(
        {key: value.contiguous() for key, value in pretrained.state_dict.items()},
        output / WEIGHTS_FILE,
    )
    backbone = pretrained.backbone
    description = {
        "backbone": backbone.record(),
        "num_features": pretrained.build().num_features,
        "method": pretrained.method,
        "source_checkpoint": pretrained.source,
        "library": backbone.source_library(),
        "load": backbone.load_snippet(WEIGHTS_FILE),
    }
    (output / DESCRIPTION_FILE).write_text(json.dumps(description, indent=2) + "\n")
    return output


def load_exported_backbone(directory: str | Path) -> nn.Module:
    """Rebuild an exported backbone with rotaux and load its weights. The module is in training
    mode, like a freshly built model; call ``.eval()`` to extract features."""
    return read_exported(directory).build()


def main(argv: list[str] | None = None) -> int:
    """``rotaux export CHECKPOINT OUTPUT_DIR``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="rotaux export",
        description=(
            f"Write the pretrained backbone of a rotaux checkpoint to OUTPUT_DIR as {WEIGHTS_FILE} "
            "(a plain state dict with the parameter names of torchvision or timm, whichever the "
            f"architecture comes from) and {DESCRIPTION_FILE} (the architecture and the lines "
            "that load the weights)."
        ),
    )
    parser.add_argument("checkpoint", help="a .ckpt written by `rotaux fit`")
    parser.add_argument("output_dir", help="folder to write backbone.pt and backbone.json into")
    args = parser.parse_args(argv)
    try:
        output = export_backbone(args.checkpoint, args.output_dir)
    except RotauxError as error:
        print(f"rotaux: error: {error}", file=sys.stderr)
        return 2
    description = json.loads((output / DESCRIPTION_FILE).read_text())
    print(
        f"Exported the backbone of {args.checkpoint} to {output}. Load it with "
        f"{description['library']}:\n{description['load']}"
    )
    return 0
