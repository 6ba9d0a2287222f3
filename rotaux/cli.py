"""The ``rotaux`` command: LightningCLI with rotaux's defaults (run folder, logging, checkpoints,
online linear probe)."""

from __future__ import annotations

import sys

from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

import rotaux.methods  # noqa: F401 - registers the methods for `--model <Name>`
from rotaux import export
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


def _rotaux_error(error: BaseException | None) -> RotauxError | None:
    """The :class:`RotauxError` in ``error``'s chain of causes, if any: jsonargparse wraps what a
    model's constructor raises in its own ``ValueError``."""
    while error is not None:
        if isinstance(error, RotauxError):
            return error
        error = error.__cause__ or error.__context__
    return None


def main(args: list[str] | None = None) -> None:
    """Entry point of the ``rotaux`` console script: ``rotaux export ...`` writes a pretrained
    backbone as a plain state dict; every other subcommand is LightningCLI's."""
    argv = sys.argv[1:] if args is None else args
    if argv[:1] == ["export"]:
        sys.exit(export.main(argv[1:]))
    try:
        RotauxCLI(
            SSLMethod,
            SSLDataModule,
            subclass_mode_model=True,
            auto_configure_optimizers=False,
            save_config_kwargs={"overwrite": True},
            args=args,
        )
    except ValueError as error:
        cause = _rotaux_error(error)
        if cause is None:
            raise
        print(f"rotaux: error: {cause}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
