"""Checkpoints that survive pre-emption and failed writes, and what an exact resume needs from
them: the random generators' states, a save on SIGTERM and the newest checkpoint of a run."""

from __future__ import annotations

import contextlib
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem
from lightning import Callback, LightningModule, Trainer
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException


def rng_states() -> dict[str, Any]:
    """The states of this process's random generators: torch's CPU generator, the current CUDA
    device's when CUDA is in use, Python's ``random`` and NumPy's global generator."""
    _, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    states = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": position,
            "has_gauss": has_gauss,
            "cached_gaussian": cached_gaussian,
        },
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    """Set the generators to ``states`` from :func:`rng_states`. A CUDA state is skipped on a
    machine without CUDA."""
    torch.set_rng_state(states["torch"])
    random.setstate(states["python"])
    numpy = states["numpy"]
    np.random.set_state(
        (
            "MT19937",
            numpy["keys"].numpy().astype(np.uint32),
            numpy["position"],
            numpy["has_gauss"],
            numpy["cached_gaussian"],
        )
    )
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["cuda"])


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each local checkpoint to a temporary file in the destination folder, flushes it to
    disk and renames it over the destination (atomic on POSIX), so a full disk, a crash or a kill
    during the write leaves the previous checkpoint intact.

    Lightning's own writer serialises the checkpoint into memory, writes it to the system's
    temporary folder and moves it into place; when that folder is on another file system (a local
    ``/tmp`` and a network checkpoint folder) the move is a copy that truncates the old file first.
    Remote paths (``s3://`` and the like) keep Lightning's writer.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        file_system, _ = url_to_fs(str(path))
        if storage_options is not None or not isinstance(file_system, LocalFileSystem):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(temporary, "wb") as handle:
                torch.save(checkpoint, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
        if os.name == "posix":
            # the rename itself reaches the disk once the folder's entry does
            folder = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)


class PreemptionCheckpoint(Callback):
    """Saves ``last.ckpt`` when the run is stopped by SIGTERM (how SLURM, Kubernetes and cloud
    schedulers pre-empt jobs), so it can resume from the step it reached.

    Lightning finishes the running training batch after the signal and then raises
    ``SIGTERMException``; the state saved here is at that batch boundary, and a resume from it is
    exact (see :mod:`rotaux.data.sampler`). Under DDP every rank receives the signal and stops at
    the same batch. The file goes to the :class:`~lightning.pytorch.callbacks.ModelCheckpoint`
    folder (``<run>/checkpoints``). Other exceptions save nothing: they can leave a half-applied
    step behind.
    """

    def on_exception(
        self, trainer: Trainer, pl_module: LightningModule, exception: BaseException
    ) -> None:
        if not isinstance(exception, SIGTERMException) or trainer.sanity_checking:
            return
        trainer.save_checkpoint(checkpoint_folder(trainer) / "last.ckpt")


def checkpoint_folder(trainer: Trainer) -> Path:
    """The run's checkpoint folder: ModelCheckpoint's, else ``<log_dir>/checkpoints``."""
    callback = trainer.checkpoint_callback
    if callback is not None and callback.dirpath is not None:
        return Path(callback.dirpath)
    return Path(trainer.log_dir or trainer.default_root_dir) / "checkpoints"


def find_resume_checkpoint(run_dir: str | Path) -> Path | None:
    """The most recently written ``*.ckpt`` under ``run_dir`` (searched recursively, so a run
    folder, its ``checkpoints/`` or a folder of run versions all work), ``last.ckpt`` winning a
    tie; ``None`` when there is none."""
    candidates = [path for path in Path(run_dir).rglob("*.ckpt") if path.is_file()]
    if not candidates:
        return None
    return max(candidates, key=lambda path: (path.stat().st_mtime_ns, path.name == "last.ckpt"))
