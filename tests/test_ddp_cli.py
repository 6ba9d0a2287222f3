"""`rotaux fit` on 2 CPU processes with DDP, as a user starts it from the shell."""

import subprocess
import sys

import pytest
from cli_utils import TINY_RUN, read_metrics


def test_rotaux_fit_with_ddp_on_two_cpu_processes(tmp_path):
    # Lightning picks the gloo backend for CPU devices and relaunches this command for rank 1;
    # 48 images in batches of 16 on each of 2 ranks: 1 step per epoch
    command = [sys.executable, "-m", "rotaux.cli", "fit", "--model", "BYOL", *TINY_RUN]
    command += ["--model.proj_hidden_dim", "64", "--model.pred_hidden_dim", "64"]
    command += ["--trainer.devices", "2", "--trainer.strategy", "ddp"]
    command += ["--trainer.max_epochs", "2", "--trainer.log_every_n_steps", "1"]
    command += ["--trainer.logger.init_args.save_dir", str(tmp_path)]
    command += ["--trainer.logger.init_args.name", "ddp"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    run = tmp_path / "ddp" / "version_0"
    rows = read_metrics(run)
    assert [row["step"] for row in rows if "train/loss" in row] == [0, 1]
    assert [row["epoch"] for row in rows if "val/linear_top1" in row] == [0, 1]
    assert (run / "checkpoints" / "last.ckpt").exists()


@pytest.mark.parametrize(
    "method",
    ["SimCLR", "SimSiam", "MoCoV2Plus", "BarlowTwins", "VICReg", "SwAV", "DINO", "NNCLR"],
)
def test_every_method_fits_with_ddp_and_rotation_on_two_cpu_processes(tmp_path, method):
    command = [sys.executable, "-m", "rotaux.cli", "fit", "--model", method, *TINY_RUN]
    command += ["--trainer.devices", "2", "--trainer.strategy", "ddp"]
    command += ["--trainer.log_every_n_steps", "1"]
    command += ["--trainer.logger.init_args.save_dir", str(tmp_path)]
    command += ["--trainer.logger.init_args.name", "ddp"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    logged = set().union(*read_metrics(tmp_path / "ddp" / "version_0"))
    assert {"train/ssl_loss", "train/rot_loss", "val/linear_top1"} <= logged
