"""Exact resume: a run stopped and resumed ends bit-identical to one that never stopped."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch
from cli_utils import read_metrics
from lightning import Callback, Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint

from rotaux.backbones import ResNet
from rotaux.callbacks import OnlineLinearProbe
from rotaux.checkpointing import AtomicCheckpointIO, PreemptionCheckpoint
from rotaux.data import SSLDataModule, Synthetic
from rotaux.loggers import RotauxLogger
from rotaux.methods import BYOL


class StopAfterEpoch(Callback):
    """Ends the run after training epoch ``epoch``, as if the job had been stopped there."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            trainer.should_stop = True


class SigtermAt(Callback):
    """Sends this process SIGTERM during training batch ``batch`` of epoch ``epoch``, as a
    scheduler pre-empting the job would."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch = epoch
        self.batch = batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if (trainer.current_epoch, batch_idx) == (self.epoch, self.batch):
            os.kill(os.getpid(), signal.SIGTERM)


def fit(
    run_dir: Path,
    max_epochs: int,
    num_workers: int = 0,
    ckpt_path: Path | None = None,
    extra_callbacks: tuple[Callback, ...] = (),
    seed: int = 0,
) -> tuple[BYOL, Trainer]:
    """BYOL + rotation (one random rotation per image, drawn on the device from the global
    generator) on 48 synthetic images in batches of 16: 3 steps per epoch, configured as
    `rotaux fit` configures it, with deterministic algorithms."""
    seed_everything(seed, workers=True)
    model = BYOL(
        backbone=ResNet(width=8, cifar_stem=True),
        proj_hidden_dim=64,
        proj_output_dim=32,
        pred_hidden_dim=64,
        rotation_hidden_dim=32,
        rotation_copies=1,
    )
    data = SSLDataModule(Synthetic(size=48), batch_size=16, num_workers=num_workers)
    trainer = Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=max_epochs,
        deterministic=True,
        logger=RotauxLogger(save_dir=run_dir, name="", version=""),
        callbacks=[
            OnlineLinearProbe(),
            ModelCheckpoint(
                monitor="val/linear_top1",
                mode="max",
                filename="best-{epoch}-{step}",
                auto_insert_metric_name=False,
            ),
            ModelCheckpoint(filename="last", enable_version_counter=False),
            PreemptionCheckpoint(),
            *extra_callbacks,
        ],
        plugins=[AtomicCheckpointIO()],
        log_every_n_steps=1,
        limit_val_batches=1,
        num_sanity_val_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    # our own files, holding the OptimizerConfig of a model built in Python
    trainer.fit(model, data, ckpt_path=ckpt_path, weights_only=False)
    return model, trainer


def probe_state(trainer: Trainer) -> dict:
    (probe,) = [each for each in trainer.callbacks if isinstance(each, OnlineLinearProbe)]
    return probe.state_dict()


def assert_same_tensors(first: dict, second: dict) -> None:
    assert first.keys() == second.keys()
    for key in first:
        if isinstance(first[key], dict):
            assert_same_tensors(first[key], second[key])
        elif isinstance(first[key], torch.Tensor):
            assert torch.equal(first[key], second[key]), key
        else:
            assert first[key] == second[key], key


def assert_same_end(reference: tuple[BYOL, Trainer], resumed: tuple[BYOL, Trainer]) -> None:
    (model, trainer), (resumed_model, resumed_trainer) = reference, resumed
    # online and EMA target networks, projector, predictor, rotation head, BatchNorm statistics
    assert_same_tensors(model.state_dict(), resumed_model.state_dict())
    assert_same_tensors(probe_state(trainer), probe_state(resumed_trainer))
    assert_same_tensors(
        trainer.optimizers[0].state_dict()["state"],
        resumed_trainer.optimizers[0].state_dict()["state"],
    )
    assert resumed_trainer.global_step == trainer.global_step == 6


def training_rows(run_dir: Path) -> list[dict]:
    """The logged metrics rows, without the step-less hyperparameter row of each start."""
    return [row for row in read_metrics(run_dir) if row["step"] is not None]


def epoch_rows(run_dir: Path, epoch: int) -> list[dict]:
    return [row for row in training_rows(run_dir) if row["epoch"] == epoch]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[Path, tuple[BYOL, Trainer]]:
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    return run_dir, fit(run_dir, max_epochs=2)


@pytest.mark.parametrize("num_workers", [0, 1])
def test_resume_at_epoch_end_matches_an_uninterrupted_run(tmp_path, uninterrupted, num_workers):
    reference_dir, reference = uninterrupted
    # the same run (its schedules span 2 epochs) stopped after the first epoch
    fit(
        tmp_path / "first",
        max_epochs=2,
        num_workers=num_workers,
        extra_callbacks=(StopAfterEpoch(0),),
    )
    resumed = fit(
        tmp_path / "second",
        max_epochs=2,
        num_workers=num_workers,
        ckpt_path=tmp_path / "first" / "checkpoints" / "last.ckpt",
    )
    assert_same_end(reference, resumed)
    rows = epoch_rows(tmp_path / "second", epoch=1)
    assert {"train/rot_loss", "train/linear_loss", "val/linear_top1"} <= set().union(*rows)
    assert rows == epoch_rows(reference_dir, epoch=1)


@pytest.mark.parametrize("num_workers", [0, 1])
def test_sigterm_mid_epoch_saves_a_checkpoint_that_resumes_exactly(
    tmp_path, uninterrupted, num_workers
):
    reference_dir, reference = uninterrupted
    with pytest.raises(SystemExit):
        fit(
            tmp_path / "first",
            max_epochs=2,
            num_workers=num_workers,
            extra_callbacks=(SigtermAt(epoch=1, batch=1),),
        )
    checkpoint = tmp_path / "first" / "checkpoints" / "last.ckpt"
    # Lightning finishes the batch during which the signal came: 3 steps of epoch 0, 2 of epoch 1
    assert torch.load(checkpoint, weights_only=False)["global_step"] == 5
    resumed = fit(tmp_path / "second", max_epochs=2, num_workers=num_workers, ckpt_path=checkpoint)
    assert_same_end(reference, resumed)
    rows = training_rows(tmp_path / "first") + training_rows(tmp_path / "second")
    assert rows == training_rows(reference_dir)


def test_a_resumed_run_continues_with_the_checkpointed_seeds(tmp_path, uninterrupted):
    reference_dir, reference = uninterrupted
    fit(tmp_path / "first", max_epochs=2, extra_callbacks=(StopAfterEpoch(0),))
    # as `rotaux fit --seed_everything true` would: a new seed for the resumed process
    resumed = fit(
        tmp_path / "second",
        max_epochs=2,
        ckpt_path=tmp_path / "first" / "checkpoints" / "last.ckpt",
        seed=1234,
    )
    assert_same_end(reference, resumed)
    assert epoch_rows(tmp_path / "second", epoch=1) == epoch_rows(reference_dir, epoch=1)
