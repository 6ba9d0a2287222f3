"""Training wall-clock and images seen, for comparing runs at equal compute."""

from __future__ import annotations

import time
from typing import Any

from lightning import Callback, LightningModule, Trainer


class TrainingClock(Callback):
    """Logs ``time/train_seconds`` and ``time/images_seen`` (over all devices) at the end of every
    training epoch, both cumulative since the start of the run and kept across resumes.

    Only training counts: the clock runs from the start of each epoch to its last optimizer step
    (data loading included), so validation and the evaluation callbacks, which cost the same
    whatever the method, do not blur a comparison between runs.
    """

    def __init__(self) -> None:
        self.train_seconds = 0.0
        self.images_seen = 0
        self._mark = 0.0

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._mark = time.perf_counter()

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        now = time.perf_counter()
        self.train_seconds += now - self._mark
        self._mark = now
        self.images_seen += len(batch["label"]) * trainer.world_size

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        pl_module.log_dict(
            {"time/train_seconds": self.train_seconds, "time/images_seen": float(self.images_seen)}
        )

    def state_dict(self) -> dict[str, float]:
        return {"train_seconds": self.train_seconds, "images_seen": self.images_seen}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.train_seconds = state_dict["train_seconds"]
        self.images_seen = int(state_dict["images_seen"])
