from cli_utils import fit_tiny, read_metrics


def test_byol_fits_with_rotation_and_logs_rotation_metrics(tmp_path):
    run = fit_tiny(
        tmp_path, "BYOL", "--model.proj_hidden_dim", "64", "--trainer.log_every_n_steps", "1"
    )
    rows = read_metrics(run)
    logged = set().union(*rows)
    assert {"train/loss", "train/ssl_loss", "train/rot_loss", "train/rot_acc"} <= logged
    assert "val/linear_top1" in logged
    assert (run / "checkpoints" / "last.ckpt").exists()
