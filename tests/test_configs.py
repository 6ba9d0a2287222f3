"""Every shipped config parses, and every CIFAR-10 recipe trains through `rotaux fit --config`
with the rotation auxiliary and as the plain baseline."""

from pathlib import Path

import pytest
from cli_utils import TINY_RUN, read_metrics

from rotaux.cli import main

CONFIGS = sorted(Path(__file__).resolve().parents[1].glob("configs/**/*.yaml"))
CIFAR10 = [path for path in CONFIGS if path.parent.name == "cifar10"]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda path: f"{path.parent.name}/{path.stem}")
def test_config_parses(config, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(config), "--print_config"])
    assert exit_info.value.code in (0, None)
    assert "rotation_weight:" in capsys.readouterr().out


@pytest.mark.parametrize("rotation", [True, False], ids=["rotation", "baseline"])
@pytest.mark.parametrize("config", CIFAR10, ids=lambda path: path.stem)
def test_cifar10_recipe_trains_on_synthetic_images(config, rotation, tmp_path):
    main(
        [
            "fit", "--config", str(config), *TINY_RUN,
            "--trainer.log_every_n_steps", "1",
            "--trainer.logger.init_args.save_dir", str(tmp_path),
            "--trainer.logger.init_args.name", "recipe",
            *([] if rotation else ["--model.rotation_weight", "0"]),
        ]
    )  # fmt: skip
    logged = set().union(*read_metrics(tmp_path / "recipe" / "version_0"))
    assert {"train/ssl_loss", "val/linear_top1"} <= logged
    assert ("train/rot_loss" in logged) == rotation
