"""Atomic checkpoint writes, the random generators' states, and pre-emption with SIGTERM."""

from __future__ import annotations

import errno
import io
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_utils import TINY_RUN, fit_tiny, read_metrics

from rotaux.checkpointing import (
    AtomicCheckpointIO,
    find_resume_checkpoint,
    restore_rng_states,
    rng_states,
)


def draws() -> tuple:
    return torch.rand(3), random.random(), np.random.rand(3).tolist(), torch.randn(2)


def test_rng_states_survive_a_weights_only_checkpoint_and_restore_every_generator():
    torch.manual_seed(1)
    random.seed(2)
    np.random.seed(3)
    np.random.randn()  # leaves a cached Gaussian in NumPy's state
    buffer = io.BytesIO()
    torch.save({"states": rng_states()}, buffer)
    expected = draws()
    buffer.seek(0)
    restore_rng_states(torch.load(buffer, weights_only=True)["states"])
    for value, reference in zip(draws(), expected, strict=True):
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, reference)
        else:
            assert value == reference


def test_a_failed_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    plugin = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    plugin.save_checkpoint({"step": torch.tensor(1)}, path)
    before = path.read_bytes()

    real_save = torch.save

    def disk_full(obj, handle, *args, **kwargs):
        handle.write(b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        plugin.save_checkpoint({"step": torch.tensor(2)}, path)
    monkeypatch.setattr(torch, "save", real_save)

    assert path.read_bytes() == before
    assert plugin.load_checkpoint(path)["step"] == 1
    assert os.listdir(path.parent) == ["last.ckpt"]  # no temporary file left behind
    plugin.save_checkpoint({"step": torch.tensor(3)}, path)
    assert plugin.load_checkpoint(path)["step"] == 3


def test_find_resume_checkpoint_picks_the_newest(tmp_path):
    assert find_resume_checkpoint(tmp_path) is None
    folder = tmp_path / "version_0" / "checkpoints"
    folder.mkdir(parents=True)
    for name, mtime in [("best-0-2.ckpt", 100), ("last.ckpt", 200), ("best-1-5.ckpt", 200)]:
        (folder / name).write_bytes(b"")
        os.utime(folder / name, (mtime, mtime))
    assert find_resume_checkpoint(tmp_path) == folder / "last.ckpt"  # a tie goes to last.ckpt
    newer = tmp_path / "version_1" / "checkpoints" / "before-nonfinite-step=7.ckpt"
    newer.parent.mkdir(parents=True)
    newer.write_bytes(b"")
    os.utime(newer, (300, 300))
    assert find_resume_checkpoint(tmp_path) == newer
    assert find_resume_checkpoint(folder) == folder / "last.ckpt"


def wait_for_training_row(metrics: Path, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read()
        if metrics.exists() and "train/loss" in metrics.read_text():
            return
        time.sleep(0.1)
    process.kill()
    raise AssertionError("rotaux fit logged no training step in time")


def test_sigterm_saves_a_checkpoint_that_resumes(tmp_path):
    command = [sys.executable, "-m", "rotaux.cli", "fit", "--model", "BYOL", *TINY_RUN]
    command += ["--model.proj_hidden_dim", "64", "--model.pred_hidden_dim", "64"]
    command += ["--trainer.max_epochs", "1000", "--trainer.log_every_n_steps", "1"]
    command += ["--trainer.logger.init_args.save_dir", str(tmp_path)]
    command += ["--trainer.logger.init_args.name", "job"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run = tmp_path / "job" / "version_0"
    wait_for_training_row(run / "metrics.jsonl", process, timeout=120)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    # it stopped itself (a process killed by the signal has return code -SIGTERM)
    assert process.returncode >= 0, output

    checkpoint = find_resume_checkpoint(run)
    assert checkpoint == run / "checkpoints" / "last.ckpt"
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    logged_steps = [row["step"] for row in read_metrics(run) if "train/loss" in row]
    # the state after the last training step that was logged
    assert saved["global_step"] == max(logged_steps) + 1
    epoch = saved["epoch"]
    resumed = fit_tiny(
        tmp_path,
        "BYOL",
        "--model.proj_hidden_dim",
        "64",
        "--model.pred_hidden_dim",
        "64",
        "--trainer.max_epochs",
        str(epoch + 2),
        "--trainer.log_every_n_steps",
        "1",
        "--ckpt_path",
        str(checkpoint),
    )
    steps = [row["step"] for row in read_metrics(resumed) if "train/loss" in row]
    assert steps[0] == saved["global_step"] and steps[-1] == 3 * (epoch + 2) - 1
    final = torch.load(
        resumed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False
    )
    assert final["global_step"] == 3 * (epoch + 2)


def test_auto_resume_continues_the_newest_run_in_its_folder(tmp_path):
    common = ("--model.proj_hidden_dim", "64", "--trainer.max_epochs", "2", "--auto_resume", "true")
    fit_tiny(
        tmp_path, "BYOL", *common, "--trainer.callbacks+=test_resume.StopAfterEpoch",
        "--trainer.callbacks.epoch=0",
    )  # fmt: skip
    run = fit_tiny(tmp_path, "BYOL", *common)
    assert [path.name for path in (tmp_path / "test").iterdir()] == ["version_0"]
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 6
