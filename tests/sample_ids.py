"""A callback that records which training samples every step of every rank sees, for the tests
of the training order (``--trainer.callbacks+=sample_ids.RecordSampleIds``)."""

from __future__ import annotations

import json
from pathlib import Path

from lightning import Callback


class RecordSampleIds(Callback):
    """Appends ``{"epoch", "batch", "ids"}`` per training step to ``<out_dir>/rank<r>.jsonl``
    (appending, so a resumed run continues the same file)."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        row = {"epoch": trainer.current_epoch, "batch": batch_idx, "ids": batch["index"].tolist()}
        with open(self.out_dir / f"rank{trainer.global_rank}.jsonl", "a") as file:
            file.write(json.dumps(row) + "\n")


def read_sample_ids(out_dir: Path, rank: int = 0) -> list[dict]:
    """The rows that :class:`RecordSampleIds` wrote for ``rank``, in order."""
    lines = (Path(out_dir) / f"rank{rank}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def ids_by_epoch(rows: list[dict]) -> dict[int, list[int]]:
    """Every sample id of each epoch, in the order the steps saw them."""
    epochs: dict[int, list[int]] = {}
    for row in rows:
        epochs.setdefault(row["epoch"], []).extend(row["ids"])
    return epochs
