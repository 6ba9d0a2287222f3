"""The ``rotaux`` command: LightningCLI with rotaux's defaults (run folder, logging, checkpoints,
online linear probe)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from jsonargparse._common import debug_mode_active
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities.exceptions import SIGTERMException

import rotaux.methods  # noqa: F401 - registers the methods for `--model <Name>`
from rotaux import export
from rotaux.architecture import read_checkpoint
from rotaux.backbones.base import legacy_resnet_record
from rotaux.callbacks import (
    CollapseMonitor,
    CompileBackbones,
    DivergenceGuard,
    EmbeddingPlot,
    OnlineLinearProbe,
    TrainingClock,
)
from rotaux.checkpointing import PreemptionCheckpoint, find_resume_checkpoint
from rotaux.cli_errors import explain
from rotaux.data import SSLDataModule, imagenet100, shards_convert
from rotaux.errors import RotauxError
from rotaux.eval import command as eval_command
from rotaux.methods import SSLMethod


class RotauxArgumentParser(LightningArgumentParser):
    """LightningCLI's parser, which answers the common mistakes (a value of the wrong type, an
    unknown method, data source or backbone, a misspelt or moved option) in one line instead of
    jsonargparse's usage text and nested dump (:mod:`rotaux.cli_errors`)."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        explanation = explain(message, self)
        if explanation is not None and self.exit_on_error and not debug_mode_active():
            print(f"rotaux: error: {explanation}", file=sys.stderr)
            sys.exit(2)
        super().error(message, ex)


class RotauxCLI(LightningCLI):
    """``rotaux fit|validate|... --config configs/<dataset>/<method>.yaml``.

    Every run writes to ``runs/<name>/version_<n>/``: TensorBoard events, ``metrics.jsonl``,
    ``config.yaml`` and ``checkpoints/`` (``last.ckpt``, rewritten every epoch and on SIGTERM,
    and the best by ``val/linear_top1``).
    """

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(OnlineLinearProbe, "linear_probe")
        parser.add_lightning_class_args(TrainingClock, "clock")
        parser.add_lightning_class_args(CollapseMonitor, "collapse")
        parser.add_lightning_class_args(EmbeddingPlot, "embedding_plot")
        parser.add_lightning_class_args(DivergenceGuard, "divergence")
        parser.add_lightning_class_args(CompileBackbones, "compile")
        parser.add_lightning_class_args(PreemptionCheckpoint, "preemption")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        # Lightning 2.6 rewrites ModelCheckpoint(save_last=True)'s last.ckpt only when that
        # callback saves a top-k checkpoint; a monitor-less one keeps last.ckpt current
        parser.add_lightning_class_args(ModelCheckpoint, "last_checkpoint")
        parser.add_argument(
            "--auto_resume",
            type=bool,
            default=False,
            help="Resume from the newest checkpoint under the logger's <save_dir>/<name> and "
            "keep writing into its run folder; start afresh when there is none.",
        )
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/linear_top1",
                "checkpoint.mode": "max",
                "checkpoint.filename": "best-{epoch}-{step}",
                "checkpoint.auto_insert_metric_name": False,
                "last_checkpoint.filename": "last",
                "last_checkpoint.enable_version_counter": False,
                "trainer.plugins": "rotaux.checkpointing.AtomicCheckpointIO",
                "trainer.logger": {
                    "class_path": "rotaux.loggers.RotauxLogger",
                    "init_args": {"save_dir": "runs", "name": "default"},
                },
            }
        )

    def _parse_ckpt_path(self) -> None:
        """Lightning's: a ``--ckpt_path``'s stored model options replace the command line's. Here
        the file is checked first (one message for a missing file or a file that is not a
        checkpoint, as ``rotaux export`` and LinearEval give), and the options of a rotaux 0.1
        checkpoint are translated."""
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        ckpt_path = self.config[subcommand].get("ckpt_path")
        if not ckpt_path or str(ckpt_path).split(":")[0] in LIGHTNING_CHECKPOINT_NAMES:
            return
        hparams = upgrade_hyperparameters(read_checkpoint(ckpt_path).get("hyper_parameters", {}))
        hparams.pop("_instantiator", None)
        if not hparams:
            return
        if "_class_path" in hparams:
            hparams = {"class_path": hparams.pop("_class_path"), "dict_kwargs": hparams}
        self.config = self.parser.parse_object({subcommand: {"model": hparams}}, self.config)

    def before_instantiate_classes(self) -> None:
        config = self.config.get(self.subcommand)
        if self.subcommand == "fit":
            _check_run_length(config.trainer)
        if self.subcommand != "fit" or not config.auto_resume:
            return
        logger = getattr(config.trainer.logger, "init_args", None)
        if logger is None or "save_dir" not in logger or "name" not in logger:
            raise RotauxError(
                "--auto_resume looks for checkpoints in the logger's <save_dir>/<name>; use a "
                "logger with a save_dir and a name (the default RotauxLogger has them)."
            )
        root = Path(logger.save_dir) / logger.name
        checkpoint = find_resume_checkpoint(root)
        if checkpoint is not None:
            config.ckpt_path = str(checkpoint)
            logger.version = checkpoint.relative_to(root).parts[0]


def _check_run_length(trainer: Any) -> None:
    """Refuse a fit that would train nothing, before any model or data is built."""
    for option in ("max_epochs", "max_steps"):
        if getattr(trainer, option, None) == 0:
            raise RotauxError(
                f"--trainer.{option} 0 trains nothing and would exit as if it had succeeded. "
                f"Set --trainer.{option} to the length of the run (the recipes use 1000 epochs on "
                "CIFAR, 400 on ImageNet-100); use `rotaux validate` to evaluate a checkpoint."
            )


LIGHTNING_CHECKPOINT_NAMES = ("best", "last", "hpc", "registry")
"""``--ckpt_path`` values that Lightning resolves itself."""


def upgrade_hyperparameters(hparams: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's model options in today's names: rotaux 0.1 recorded a ResNet as
    ``backbone``, ``cifar_stem`` and ``backbone_width``."""
    hparams = dict(hparams)
    if isinstance(hparams.get("backbone"), str) and "backbone_width" in hparams:
        hparams["backbone"] = legacy_resnet_record(
            {
                "backbone": hparams["backbone"],
                "cifar_stem": hparams.pop("cifar_stem", False),
                "backbone_width": hparams.pop("backbone_width"),
            }
        )
    return hparams


EXTRA_SUBCOMMANDS: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "export": (export.main, "write a checkpoint's backbone for torchvision/timm/rotaux"),
    "eval": (eval_command.main, "evaluate a backbone: linear, knn, finetune, semisup, transfer"),
    "shards": (shards_convert.main, "pack an image folder or file list into shards"),
    "imagenet100": (imagenet100.main, "build ImageNet-100 (CMC's classes) from ImageNet-1k"),
}
"""rotaux's own subcommands beside Lightning's fit/validate/test/predict: name -> (entry point
taking the remaining arguments and returning the exit status, one-line description)."""


def _epilog() -> str:
    listed = "; ".join(f"{name}: {help_text}" for name, (_, help_text) in EXTRA_SUBCOMMANDS.items())
    return f"rotaux's other subcommands ({listed}). Run rotaux <subcommand> --help for each."


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
    if argv[:1] and argv[0] in EXTRA_SUBCOMMANDS:
        entry_point, _ = EXTRA_SUBCOMMANDS[argv[0]]
        sys.exit(entry_point(argv[1:]))
    try:
        RotauxCLI(
            SSLMethod,
            SSLDataModule,
            subclass_mode_model=True,
            auto_configure_optimizers=False,
            parser_class=RotauxArgumentParser,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"epilog": _epilog()},
            args=args,
        )
    except ValueError as error:
        cause = _rotaux_error(error)
        if cause is None:
            raise
        print(f"rotaux: error: {cause}", file=sys.stderr)
        sys.exit(2)
    except SIGTERMException:
        # not 0: a pre-empted run has not finished (schedulers restart jobs that fail)
        print("rotaux: stopped by SIGTERM; resume with --auto_resume true", file=sys.stderr)
        sys.exit(143)


if __name__ == "__main__":
    main()
