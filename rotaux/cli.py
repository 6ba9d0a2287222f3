"""The ``rotaux`` command: LightningCLI with rotaux's defaults (run folder, logging, checkpoints,
online linear probe)."""

from __future__ import annotations

import sys

from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

import rotaux.methods  # noqa: F401 - registers the methods for `--model <Name>`
from rotaux.callbacks import OnlineLinearProbe, TrainingClock
from rotaux.data import SSLDataModule
from rotaux.errors import RotauxError
from rotaux.methods import SSLMethod


class RotauxCLI(LightningCLI):
    """``rotaux fit|validate|... --config configs/<dataset>/<method>.yaml``.

    Every run writes to ``runs/<name>/version_<n>/``: TensorBoard events, ``metrics.jsonl``,
    ``config.yaml`` and ``checkpoints/`` (``last.ckpt`` and the best by ``val/linear_top1``).
    """

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(OnlineLinearProbe, "linear_probe")
        parser.add_lightning_class_args(TrainingClock, "clock")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/linear_top1",
                "checkpoint.mode": "max",
                "checkpoint.save_last": True,
                "checkpoint.filename": "best-{epoch}-{step}",
                "checkpoint.auto_insert_metric_name": False,
                "trainer.logger": {
                    "class_path": "rotaux.loggers.RotauxLogger",
                    "init_args": {"save_dir": "runs", "name": "default"},
                },
            }
        )


def main(args: list[str] | None = None) -> None:
    """Entry point of the ``rotaux`` console script."""
    try:
        RotauxCLI(
            SSLMethod,
            SSLDataModule,
            subclass_mode_model=True,
            auto_configure_optimizers=False,
            save_config_kwargs={"overwrite": True},
            args=args,
        )
    except RotauxError as error:
        print(f"rotaux: error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
