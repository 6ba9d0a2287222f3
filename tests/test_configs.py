"""Every shipped config parses alone and composed with the dataset and trainer files, every
registered method has a CIFAR-10 recipe, and every CIFAR-10 recipe trains through
`rotaux fit --config` with the rotation auxiliary and as the plain baseline."""

from pathlib import Path

import pytest
import yaml
from cli_utils import read_metrics

from rotaux.cli import main
from rotaux.methods import METHODS

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
# efficiency-report specs (benchmarks/efficiency.py --spec) list methods instead of a model
RECIPES = sorted(
    path
    for path in CONFIGS.glob("**/*.yaml")
    if path.parent.name not in ("data", "trainer")
    and "methods" not in yaml.safe_load(path.read_text())
)
FRAGMENTS = sorted(CONFIGS.glob("data/*.yaml")) + sorted(CONFIGS.glob("trainer/*.yaml"))
CIFAR10 = sorted(CONFIGS.glob("cifar10/*.yaml"))

# the recipe's backbone family, shrunk: the test checks the recipe, not the network's size
SMALL_BACKBONES = {
    "ResNet": ["--model.backbone.width", "8"],
    "WideResNet": ["--model.backbone.depth", "10", "--model.backbone.widen_factor", "1"],
    "ViT": ["--model.backbone.size", "tiny", "--model.backbone.patch_size", "8"],
}
# what the recipes need at this scale (32 images, batch 16): W-MSE whitens groups of more samples
# than dimensions that divide the batch; DeepCluster-v2 makes at most one cluster per image
SMALL_DATA_OPTIONS = {
    "wmse": ["--model.whitening_size", "16", "--model.proj_output_dim", "8"],
    "deepclusterv2": ["--model.num_prototypes", "8"],
}


def _printed(capsys, *configs: Path) -> dict:
    arguments = [argument for config in configs for argument in ("--config", str(config))]
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *arguments, "--print_config"])
    assert exit_info.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


def _assert_contains(printed: dict, expected: dict, where: str = "") -> None:
    for key, value in expected.items():
        if isinstance(value, dict):
            _assert_contains(printed[key], value, f"{where}{key}.")
        else:
            assert printed[key] == value, f"{where}{key}"


@pytest.mark.parametrize("config", RECIPES, ids=lambda path: f"{path.parent.name}/{path.stem}")
def test_recipe_parses(config, capsys):
    printed = _printed(capsys, config)
    assert "rotation_weight" in printed["model"]["init_args"]


@pytest.mark.parametrize("fragment", FRAGMENTS, ids=lambda path: f"{path.parent.name}/{path.stem}")
def test_dataset_and_trainer_files_override_a_recipe(fragment, capsys):
    recipe = CONFIGS / "cifar10" / "byol.yaml"
    alone = yaml.safe_load(fragment.read_text())
    printed = _printed(capsys, recipe, fragment)
    _assert_contains(printed, alone)
    # the rest of the recipe is kept
    assert printed["model"]["init_args"]["proj_hidden_dim"] == 4096


def test_every_registered_method_has_a_cifar10_recipe():
    stems = {path.stem for path in CIFAR10}
    assert set(METHODS) <= stems


@pytest.mark.parametrize("rotation", [True, False], ids=["rotation", "baseline"])
@pytest.mark.parametrize("config", CIFAR10, ids=lambda path: path.stem)
def test_cifar10_recipe_trains_on_synthetic_images(config, rotation, tmp_path):
    backbone = yaml.safe_load(config.read_text())["model"]["init_args"]["backbone"]
    family = backbone["class_path"].rsplit(".", 1)[-1]
    main(
        [
            "fit", "--config", str(config),
            *SMALL_BACKBONES[family],
            *SMALL_DATA_OPTIONS.get(config.stem, []),
            "--data.dataset", "Synthetic", "--data.dataset.size", "32",
            "--data.batch_size", "16", "--data.num_workers", "0",
            "--trainer.accelerator", "cpu", "--trainer.devices", "1",
            "--trainer.sync_batchnorm", "false", "--trainer.max_epochs", "1",
            "--trainer.limit_val_batches", "1", "--trainer.num_sanity_val_steps", "0",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--trainer.log_every_n_steps", "1",
            "--trainer.logger.init_args.save_dir", str(tmp_path),
            "--trainer.logger.init_args.name", "recipe",
            *([] if rotation else ["--model.rotation_weight", "0"]),
        ]
    )  # fmt: skip
    logged = set().union(*read_metrics(tmp_path / "recipe" / "version_0"))
    assert {"train/ssl_loss", "val/linear_top1"} <= logged
    assert ("train/rot_loss" in logged) == rotation
