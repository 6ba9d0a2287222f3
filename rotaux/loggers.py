"""TensorBoard logging plus a machine-readable copy of every logged metric."""

from __future__ import annotations

import json
import os
from typing import Any

from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only


class RotauxLogger(TensorBoardLogger):
    """A :class:`TensorBoardLogger` that also appends each logged row to ``metrics.jsonl`` in the
    run folder (one JSON object per line: ``step``, ``epoch`` when logged, and the metrics), so
    scripts can read results without TensorBoard."""

    @property
    def metrics_path(self) -> str:
        return os.path.join(self.log_dir, "metrics.jsonl")

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        super().log_metrics(metrics, step)
        row = {"step": step}
        row.update({key: float(value) for key, value in metrics.items()})
        os.makedirs(self.log_dir, exist_ok=True)
        with open(self.metrics_path, "a") as handle:
            handle.write(json.dumps(row) + "\n")
