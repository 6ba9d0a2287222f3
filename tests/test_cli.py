import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from cli_utils import TINY_RUN, fit_tiny, read_metrics

from rotaux.backbones import ResNet, backbone_from_record
from rotaux.cli import main, upgrade_hyperparameters

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def script_run(tmp_path_factory) -> Path:
    """One real `rotaux fit` through the installed console script (the only subprocess run)."""
    workdir = tmp_path_factory.mktemp("cli")
    script = Path(sys.executable).parent / "rotaux"
    assert script.exists(), f"console script missing next to {sys.executable}"
    command = [
        str(script),
        "fit",
        "--model",
        "BYOL",
        *TINY_RUN,
        "--model.proj_hidden_dim",
        "32",
        "--model.pred_hidden_dim",
        "32",
        "--trainer.log_every_n_steps",
        "1",
        "--trainer.logger.init_args.save_dir",
        str(workdir / "runs"),
    ]
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir / "runs" / "default" / "version_0"


def test_console_script_writes_checkpoint_metrics_and_config(script_run):
    assert (script_run / "checkpoints" / "last.ckpt").exists()
    assert list((script_run / "checkpoints").glob("best-*.ckpt"))
    rows = read_metrics(script_run)
    logged = set().union(*rows)
    assert {"val/linear_top1", "train/rot_loss", "train/ssl_loss", "train/loss"} <= logged
    assert [row["val/linear_top1"] for row in rows if "val/linear_top1" in row][0] <= 1.0
    config = yaml.safe_load((script_run / "config.yaml").read_text())
    assert config["model"]["init_args"]["rotation_weight"] == 0.4
    dataset = config["data"]["dataset"]
    assert dataset["class_path"].endswith("Synthetic") and dataset["init_args"]["size"] == 48
    assert config["model"]["init_args"]["backbone"]["init_args"]["width"] == 8
    checkpoint = torch.load(script_run / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["global_step"] == 3
    backbone = checkpoint["rotaux_architecture"]["backbone"]
    assert backbone["class_path"] == "rotaux.backbones.resnet.ResNet"
    assert (backbone["init_args"]["width"], backbone["init_args"]["cifar_stem"]) == (8, True)


def test_resuming_continues_from_the_last_checkpoint(script_run, tmp_path):
    last = script_run / "checkpoints" / "last.ckpt"
    probe_state = _probe_state(last)
    run = fit_tiny(
        tmp_path,
        "BYOL",
        "--model.proj_hidden_dim",
        "32",
        "--model.pred_hidden_dim",
        "32",
        "--trainer.max_epochs",
        "2",
        "--trainer.log_every_n_steps",
        "1",
        "--ckpt_path",
        str(last),
    )
    steps = [row["step"] for row in read_metrics(run) if "train/loss" in row]
    assert steps and min(steps) >= 3
    resumed = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert resumed["global_step"] == 6
    # the probe state travels through the resume and keeps training
    new_state = resumed["callbacks"][_probe_key(resumed)]["classifier"]["1.weight"]
    assert new_state.shape == probe_state.shape and not torch.equal(new_state, probe_state)


def _probe_key(checkpoint: dict) -> str:
    (key,) = [key for key in checkpoint["callbacks"] if "OnlineLinearProbe" in key]
    return key


def _probe_state(path: Path) -> torch.Tensor:
    checkpoint = torch.load(path, weights_only=False)
    return checkpoint["callbacks"][_probe_key(checkpoint)]["classifier"]["1.weight"]


def test_print_config_shows_rotation_and_data_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--model", "BYOL", "--print_config"])
    assert exit_info.value.code == 0
    config = yaml.safe_load(capsys.readouterr().out)
    model = config["model"]["init_args"]
    assert config["model"]["class_path"].endswith("BYOL")
    assert (model["rotation_weight"], model["rotation_hidden_dim"]) == (0.4, 2048)
    assert model["optimizer"]["name"] == "lars"
    for option in ("rotation_source", "rotation_copies", "rotation_crop_size", "backbone"):
        assert option in model
    assert model["backbone"]["class_path"].endswith("ResNet")
    assert model["backbone"]["init_args"]["name"] == "resnet18"
    # the data source owns its options; the model owns the rotation options
    assert config["data"]["dataset"]["class_path"].endswith("CIFAR10")
    assert config["data"]["dataset"]["init_args"]["root"] == "./data"
    assert "batch_size" in config["data"]
    assert not {"root", "rotation_source", "rotation_copies", "with_rotation"} & set(config["data"])
    assert config["checkpoint"]["monitor"] == "val/linear_top1"
    assert config["linear_probe"]["lr"] == 0.1


def test_smoke_config_parses(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(REPO / "configs" / "smoke.yaml"), "--print_config"])
    config = yaml.safe_load(capsys.readouterr().out)
    backbone = config["model"]["init_args"]["backbone"]["init_args"]
    assert (backbone["width"], backbone["cifar_stem"]) == (16, True)
    assert config["data"]["dataset"]["class_path"].endswith("Synthetic")
    assert config["data"]["dataset"]["init_args"]["size"] == 2048


def test_zero_rotation_weight_runs_without_rotation(tmp_path):
    run = fit_tiny(
        tmp_path,
        "BYOL",
        "--model.rotation_weight",
        "0",
        "--model.proj_hidden_dim",
        "32",
        "--model.pred_hidden_dim",
        "32",
        "--trainer.log_every_n_steps",
        "1",
    )
    logged = set().union(*read_metrics(run))
    assert {"train/loss", "train/ssl_loss", "val/linear_top1"} <= logged
    assert not {"train/rot_loss", "train/rot_acc"} & logged
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert not [key for key in checkpoint["state_dict"] if "rotation" in key]


def test_rotaux_0_1_hyperparameters_are_upgraded_to_a_backbone_record():
    legacy = {"backbone": "resnet50", "cifar_stem": True, "backbone_width": 32, "lr": 1}
    upgraded = upgrade_hyperparameters(legacy)
    assert set(upgraded) == {"backbone", "lr"} and upgraded["lr"] == 1
    assert backbone_from_record(upgraded["backbone"]) == ResNet("resnet50", True, 32)
    assert legacy["backbone_width"] == 32  # the checkpoint's own dict is left alone
    current = {"backbone": ResNet(width=8).record()}
    assert upgrade_hyperparameters(current) == current
