"""Where the evaluation callbacks get their labels, and what they do when there are none."""

from __future__ import annotations

from typing import Literal

from lightning import Trainer
from lightning.pytorch.utilities import rank_zero_warn

EvaluationData = Literal["train", "eval_dataset", "none"]

EVAL_DATASET_HINT = (
    "Set --data.eval_dataset to a labelled source (for example --data.eval_dataset FileList "
    "--data.eval_dataset.path labels.csv --data.eval_dataset.label_column label, or "
    "--data.eval_dataset ImageFolder --data.eval_dataset.root DIR)"
)


def evaluation_data(trainer: Trainer) -> EvaluationData:
    """Where the data module's evaluation labels come from (its ``evaluation_data``):
    ``train`` (the training batches' labels), ``eval_dataset`` (a separate labelled set) or
    ``none``. A data module that does not say is taken to have labelled training batches."""
    return getattr(trainer.datamodule, "evaluation_data", None) or "train"


def switch_off_without_labels(trainer: Trainer, callback: str, metrics: tuple[str, ...]) -> bool:
    """``True``, with one warning naming ``--data.eval_dataset``, when there are no labels to
    evaluate with; the caller then does nothing. Checkpoint callbacks that keep the best
    checkpoint by one of ``metrics`` stop keeping one (the metric will never be logged, and
    Lightning would stop the run at the first validation); ``last.ckpt`` is still written."""
    if evaluation_data(trainer) != "none":
        return False
    stopped = []
    for checkpoint in trainer.checkpoint_callbacks:
        if getattr(checkpoint, "monitor", None) in metrics and checkpoint.save_top_k != 0:
            checkpoint.save_top_k = 0
            stopped.append(checkpoint.monitor)
    source = type(getattr(trainer.datamodule, "dataset", None)).__name__
    rank_zero_warn(
        f"{callback} is switched off: the training images ({source}) have no labels and no "
        f"labelled evaluation set is given, so {', '.join(metrics)} will not be reported"
        + (f" and no best checkpoint is kept by {stopped[0]}" if stopped else "")
        + f". {EVAL_DATASET_HINT} to report them."
    )
    return True
