"""Reading checkpoints and the architecture they record, with one answer for every entry point.

``rotaux fit/validate --ckpt_path``, ``rotaux export``, ``LinearEval`` and
``load_from_checkpoint`` all open checkpoints through :func:`read_checkpoint` and compare
architectures through :class:`Architecture`, so a missing file, a file that is not a checkpoint,
a checkpoint of another method or backbone, or a rotation head that the model lacks gets the same
message wherever it is met.
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rotaux.backbones import Backbone, backbone_from_record
from rotaux.backbones.base import legacy_resnet_record
from rotaux.errors import RotauxError

CHECKPOINT_HINT = (
    "Pass the .ckpt that `rotaux fit` wrote (runs/<name>/version_<n>/checkpoints/last.ckpt), or "
    "rerun the training command with --auto_resume true to continue from the newest checkpoint "
    "of its run folder."
)


class CheckpointError(RotauxError):
    """A checkpoint path that cannot be used; the message names the file and the fix."""


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The contents of the Lightning checkpoint at ``path``, loaded on the CPU the way Lightning
    loads it (``weights_only``), or a :class:`CheckpointError` naming the file and the fix."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"Checkpoint {path} does not exist. {CHECKPOINT_HINT}")
    if path.is_dir():
        raise CheckpointError(f"Checkpoint {path} is a folder, not a file. {CHECKPOINT_HINT}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # a pickle naming a class that is not allow-listed; any other unpickling error (a text
        # file, a truncated download) means the file is no checkpoint at all
        unsupported = [line for line in str(error).splitlines() if "Unsupported global" in line]
        if unsupported:
            raise CheckpointError(
                f"{path} holds Python objects that rotaux does not load without trusting them "
                f"({unsupported[0].strip()}). If it comes from a custom class of "
                "yours (a backbone, a config), import that class before loading; rotaux "
                "registers Backbone subclasses and its own configs automatically."
            ) from error
        raise CheckpointError(_not_a_checkpoint(path, error)) from error
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as error:
        raise CheckpointError(_not_a_checkpoint(path, error)) from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(
            f"{path} is not a Lightning checkpoint (it has no state_dict). {CHECKPOINT_HINT} "
            "An exported backbone is a folder with backbone.pt and backbone.json; give that "
            "folder to LinearEval or `rotaux eval` instead."
        )
    return checkpoint


def _not_a_checkpoint(path: Path, error: BaseException) -> str:
    # torch's weights-only message opens with advice about trusting the file, which does not
    # apply: its last line ("invalid load key ...") says what is wrong
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    reason = lines[-1] if lines else type(error).__name__
    if "weights_only" in reason or "pytorch.org" in reason or len(reason) > 200:
        reason = "torch.load cannot read it"
    return f"{path} is not a PyTorch checkpoint ({reason}). {CHECKPOINT_HINT}"


@dataclass(frozen=True)
class Architecture:
    """What a checkpoint's weights fit: the method class, the backbone and, for methods with the
    rotation auxiliary, whether a rotation head exists (``None`` where unknown or not
    applicable)."""

    method: str
    backbone: Backbone
    rotation_head: bool | None = None

    def record(self) -> dict[str, Any]:
        """The ``rotaux_architecture`` entry of a checkpoint (plain types only)."""
        return {
            "method": self.method,
            "backbone": self.backbone.record(),
            "rotation_head": self.rotation_head,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Architecture:
        if isinstance(record.get("backbone"), str):
            backbone = backbone_from_record(legacy_resnet_record(record))
        else:
            backbone = backbone_from_record(record["backbone"])
        return cls(record["method"], backbone, record.get("rotation_head"))

    @classmethod
    def from_checkpoint(cls, checkpoint: dict[str, Any]) -> Architecture | None:
        """The checkpoint's architecture, or ``None`` for a checkpoint rotaux did not write."""
        record = checkpoint.get("rotaux_architecture")
        return None if not isinstance(record, dict) else cls.from_record(record)

    def check_loads_into(self, built: Architecture) -> None:
        """Raise a :class:`CheckpointError` that says what differs and what to do unless weights
        of this architecture load into a module built as ``built``."""
        if (self.method, self.backbone) != (built.method, built.backbone):
            raise CheckpointError(
                f"The checkpoint was written by {self.method} with backbone {self.backbone}, but "
                f"this run builds {built.method} with {built.backbone}. Resume with the config "
                "the checkpoint was trained with (it is saved as config.yaml in the run folder)."
            )
        if None not in (self.rotation_head, built.rotation_head) and (
            self.rotation_head != built.rotation_head
        ):
            if self.rotation_head:
                raise CheckpointError(
                    "The checkpoint has a rotation head (it was trained with rotation_weight > 0) "
                    "but this model was built with rotation_weight 0, which has none. Build it "
                    "with the checkpoint's rotation_weight, or take only the backbone: "
                    "`rotaux export CHECKPOINT OUT` or LinearEval."
                )
            raise CheckpointError(
                "The checkpoint has no rotation head (it was trained with rotation_weight 0) but "
                "this model was built with rotation_weight > 0. Build it with rotation_weight "
                "0, or start a new run from the exported backbone."
            )
