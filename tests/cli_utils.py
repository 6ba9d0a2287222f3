"""Run `rotaux fit` in-process on tiny synthetic data, as a user would from the shell."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest
import yaml

from rotaux.cli import main

TINY_BACKBONE = ["--model.backbone.width", "8", "--model.backbone.cifar_stem", "true"]
"""The tiny run's backbone: the default ResNet-18 at width 8 with the CIFAR stem. A model whose
backbone has no default (LinearEval) needs ``--model.backbone ResNet`` before these."""

TINY_RUN = [
    *TINY_BACKBONE,
    "--data.dataset",
    "Synthetic",
    "--data.dataset.size",
    "48",
    "--data.batch_size",
    "16",
    "--data.num_workers",
    "0",
    "--trainer.accelerator",
    "cpu",
    "--trainer.devices",
    "1",
    "--trainer.max_epochs",
    "1",
    "--trainer.limit_val_batches",
    "1",
    "--trainer.num_sanity_val_steps",
    "0",
    "--trainer.enable_progress_bar",
    "false",
    "--trainer.enable_model_summary",
    "false",
]


def fit_tiny(tmp_path: Path, model: str, *extra: str) -> Path:
    """``rotaux fit --model <model>``: one epoch (3 steps) of a width-8 ResNet-18 on 48 synthetic
    images, written into ``tmp_path``. Returns the run folder (metrics.jsonl, checkpoints/)."""
    main(
        [
            "fit",
            "--model",
            model,
            *TINY_RUN,
            "--trainer.logger.init_args.save_dir",
            str(tmp_path),
            "--trainer.logger.init_args.name",
            "test",
            *extra,
        ]
    )
    return tmp_path / "test" / "version_0"


def read_metrics(run_dir: Path) -> list[dict]:
    """Rows of the run's metrics.jsonl."""
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


SMALL_HEADS = [
    "--model.proj_hidden_dim", "64",
    "--model.proj_output_dim", "32",
    "--model.rotation_hidden_dim", "32",
    "--trainer.log_every_n_steps", "1",
]  # fmt: skip
ROTATION_METRICS = {"train/rot_loss", "train/rot_acc"}


def check_rotation_switch(tmp_path: Path, model: str, rotation: bool, *extra: str) -> None:
    """Fit ``model`` with its default rotation weight (``rotation``) or with weight 0, and check
    that the rotation loss is logged and added to the method's loss exactly when it is on."""
    baseline = [] if rotation else ["--model.rotation_weight", "0"]
    run = fit_tiny(tmp_path, model, *SMALL_HEADS, *extra, *baseline)
    rows = read_metrics(run)
    logged = set().union(*rows)
    steps = [row for row in rows if "train/ssl_loss" in row]
    assert steps
    assert {"train/loss", "train/ssl_loss", "val/linear_top1"} <= logged
    assert (run / "checkpoints" / "last.ckpt").exists()
    if rotation:
        assert logged >= ROTATION_METRICS
        # the rotation cross-entropy is positive, so it adds to the method's loss
        assert all(row["train/loss"] > row["train/ssl_loss"] for row in steps)
    else:
        assert not ROTATION_METRICS & logged
        assert all(row["train/loss"] == row["train/ssl_loss"] for row in steps)


def constructor_options(method: type) -> set[str]:
    """Every option ``method`` accepts: the named parameters of its own ``__init__`` and of the
    ``__init__`` of every class in its MRO, since each forwards ``**base_options`` to the next
    (``self``, ``*args`` and ``**kwargs`` catches are not options)."""
    catches = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return {
        name
        for cls in method.__mro__
        if "__init__" in vars(cls)
        for name, parameter in inspect.signature(cls.__init__).parameters.items()
        if name != "self" and parameter.kind not in catches
    }


def printed_model_options(capsys: pytest.CaptureFixture, model: str, method: type) -> dict:
    """The ``init_args`` that ``rotaux fit --model <model> --print_config`` prints, after checking
    that they are exactly the options of the method and of the classes it forwards
    ``**base_options`` to: its own, the rotation options and the base options."""
    with pytest.raises(SystemExit):
        main(["fit", "--model", model, "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)["model"]
    assert printed["class_path"] == model
    options = constructor_options(method)
    assert {"rotation_weight", "rotation_hidden_dim", "rotation_num_layers"} <= options
    assert {"rotation_source", "rotation_copies", "rotation_crop_size"} <= options
    assert {"backbone", "optimizer", "channels_last"} <= options
    assert set(printed["init_args"]) == options
    return printed["init_args"]
