import inspect

import pytest
import yaml
from cli_utils import fit_tiny, read_metrics

from rotaux.cli import main
from rotaux.methods.vicreg import VICReg

MODEL = "rotaux.methods.vicreg.VICReg"
SMALL_HEADS = [
    "--model.proj_hidden_dim",
    "64",
    "--model.proj_output_dim",
    "32",
    "--model.rotation_hidden_dim",
    "32",
    "--trainer.log_every_n_steps",
    "1",
]
ROTATION_METRICS = {"train/rot_loss", "train/rot_acc"}


@pytest.mark.parametrize("rotation", [True, False], ids=["default_rotation", "weight_0"])
def test_vicreg_fits_and_logs_rotation_metrics_only_with_rotation(tmp_path, rotation):
    baseline = [] if rotation else ["--model.rotation_weight", "0"]
    run = fit_tiny(tmp_path, MODEL, *SMALL_HEADS, *baseline)
    rows = read_metrics(run)
    logged = set().union(*rows)
    rows = [row for row in rows if "train/ssl_loss" in row]
    assert rows
    assert {"train/loss", "train/ssl_loss", "val/linear_top1"} <= logged
    assert (run / "checkpoints" / "last.ckpt").exists()
    if rotation:
        assert logged >= ROTATION_METRICS
        # the rotation cross-entropy is positive, so it adds to the VICReg loss
        assert all(row["train/loss"] > row["train/ssl_loss"] for row in rows)
    else:
        assert not ROTATION_METRICS & logged
        assert all(row["train/loss"] == row["train/ssl_loss"] for row in rows)


def test_vicreg_print_config_lists_every_constructor_option(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--model", MODEL, "--print_config"])
    model = yaml.safe_load(capsys.readouterr().out)["model"]
    assert model["class_path"] == MODEL
    options = set(inspect.signature(VICReg.__init__).parameters) - {"self"}
    assert {"rotation_weight", "rotation_hidden_dim", "rotation_num_layers"} <= options
    assert set(model["init_args"]) == options
    assert model["init_args"]["invariance_weight"] == 25.0
    assert model["init_args"]["variance_weight"] == 25.0
    assert model["init_args"]["covariance_weight"] == 1.0
    assert model["init_args"]["optimizer"]["lr"] == 0.3
