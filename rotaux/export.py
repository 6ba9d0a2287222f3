"""``rotaux export``: the pretrained backbone of a checkpoint as a plain state dict.

``backbone.pt`` holds the backbone's ``state_dict`` with torchvision's parameter names, so at
the standard width of 64 it loads with ``strict=True`` into ``torchvision.models.resnet18()``
(or ``resnet50()``) once ``fc`` is ``nn.Identity()`` and, for the CIFAR stem, ``conv1`` is
``nn.Conv2d(3, 64, 3, 1, 1, bias=False)`` and ``maxpool`` is ``nn.Identity()``.
``backbone.json`` describes the architecture; :func:`load_exported_backbone` rebuilds any
width. ``backbone.pt`` loads with ``torch.load(..., weights_only=True)``; the checkpoint it comes
from is a full pickle (like every Lightning checkpoint): export only checkpoints you trust.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision.models.resnet import ResNet

from rotaux.backbones import build_backbone
from rotaux.errors import RotauxError

WEIGHTS_FILE = "backbone.pt"
DESCRIPTION_FILE = "backbone.json"
_PREFIX = "backbone."
_WHERE = "the .ckpt that `rotaux fit` wrote (runs/<name>/version_<n>/checkpoints/last.ckpt)"


@dataclass(frozen=True)
class PretrainedBackbone:
    """The weights of a pretrained backbone and the architecture they belong to."""

    name: str
    cifar_stem: bool
    width: int
    method: str
    source: str
    state_dict: dict[str, torch.Tensor]

    def build(self) -> ResNet:
        """A backbone of this architecture holding these weights (loaded with ``strict=True``)."""
        try:
            network = build_backbone(self.name, cifar_stem=self.cifar_stem, width=self.width)
            network.load_state_dict(self.state_dict)
        except (RuntimeError, ValueError) as error:
            raise RotauxError(
                f"The backbone weights in {self.source} do not fit the architecture it records "
                f"({self.name}, cifar_stem={self.cifar_stem}, width={self.width}): {error}"
            ) from error
        return network


def read_checkpoint(path: str | Path) -> PretrainedBackbone:
    """The backbone of a checkpoint written by ``rotaux fit`` (the ``backbone.*`` entries of its
    state dict and its ``rotaux_architecture`` record), checked to load into its architecture."""
    path = Path(path)
    if not path.is_file():
        raise RotauxError(f"Checkpoint {path} does not exist. Pass {_WHERE}.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:
        raise RotauxError(
            f"{path} is not a PyTorch checkpoint ({type(error).__name__}: {error}). Pass {_WHERE}."
        ) from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise RotauxError(
            f"{path} is not a Lightning checkpoint (it has no state_dict). Pass {_WHERE}, or the "
            f"folder of an exported backbone (with {WEIGHTS_FILE} and {DESCRIPTION_FILE})."
        )
    weights = {
        key[len(_PREFIX) :]: value
        for key, value in checkpoint["state_dict"].items()
        if key.startswith(_PREFIX)
    }
    if not weights:
        raise RotauxError(
            f"{path} holds no backbone: its state_dict has no 'backbone.*' entries. Pass the "
            "checkpoint of a rotaux method (BYOL, SimCLR, ...), "
            f"{_WHERE}."
        )
    architecture = checkpoint.get("rotaux_architecture")
    if not isinstance(architecture, dict):
        raise RotauxError(
            f"{path} was not written by a rotaux method: it records no rotaux_architecture, so "
            f"the backbone cannot be rebuilt. Pass {_WHERE}."
        )
    backbone = PretrainedBackbone(
        name=architecture["backbone"],
        cifar_stem=architecture["cifar_stem"],
        width=architecture["backbone_width"],
        method=architecture["method"],
        source=str(path.resolve()),
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
    return PretrainedBackbone(
        name=description["name"],
        cifar_stem=description["cifar_stem"],
        width=description["width"],
        method=description["method"],
        source=str(directory.resolve()),
        state_dict=torch.load(weights_path, map_location="cpu", weights_only=True),
    )


def read_pretrained(path: str | Path) -> PretrainedBackbone:
    """The backbone of a ``rotaux fit`` checkpoint file or of an exported-backbone folder."""
    return read_exported(path) if Path(path).is_dir() else read_checkpoint(path)


def export_backbone(checkpoint_path: str | Path, output_dir: str | Path) -> Path:
    """Write the backbone of a ``rotaux fit`` checkpoint to ``output_dir`` as ``backbone.pt`` (a
    plain state dict) and ``backbone.json`` (name, cifar_stem, width, num_features, method,
    source checkpoint, and how to load it). Returns ``output_dir``."""
    backbone = read_checkpoint(checkpoint_path)
    output = Path(output_dir)
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RotauxError(f"Cannot create the output folder {output}: {error}") from error
    torch.save(
        {key: value.contiguous() for key, value in backbone.state_dict.items()},
        output / WEIGHTS_FILE,
    )
    description = {
        "name": backbone.name,
        "cifar_stem": backbone.cifar_stem,
        "width": backbone.width,
        "num_features": backbone.build().num_features,
        "method": backbone.method,
        "source_checkpoint": backbone.source,
        "torchvision_compatible": backbone.width == 64,
        "load": _loading_instructions(backbone),
    }
    (output / DESCRIPTION_FILE).write_text(json.dumps(description, indent=2) + "\n")
    return output


def _loading_instructions(backbone: PretrainedBackbone) -> str:
    rebuild = "rotaux.export.load_exported_backbone('<this folder>')"
    if backbone.width != 64:
        return (
            f"{rebuild}; torchvision has no constructor for width {backbone.width}, but the "
            "parameter names are torchvision's."
        )
    stem = (
        "; model.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False); model.maxpool = nn.Identity()"
        if backbone.cifar_stem
        else ""
    )
    return (
        f"model = torchvision.models.{backbone.name}(); model.fc = nn.Identity(){stem}; "
        f"model.load_state_dict(torch.load('{WEIGHTS_FILE}', weights_only=True)), or {rebuild}"
    )


def load_exported_backbone(directory: str | Path) -> ResNet:
    """Rebuild an exported backbone (any width) with :func:`rotaux.backbones.build_backbone` and
    load its weights. The module is in training mode, like a freshly built torchvision model;
    call ``.eval()`` to extract features."""
    return read_exported(directory).build()


def main(argv: list[str] | None = None) -> int:
    """``rotaux export CHECKPOINT OUTPUT_DIR``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="rotaux export",
        description=(
            f"Write the pretrained backbone of a rotaux checkpoint to OUTPUT_DIR as {WEIGHTS_FILE} "
            f"(a plain state dict with torchvision's parameter names) and {DESCRIPTION_FILE} (its "
            "architecture)."
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
    print(f"Exported the backbone of {args.checkpoint} to {output}")
    return 0
