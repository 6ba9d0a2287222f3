"""Every way a user can get the configuration or the data wrong ends in a message that names the
problem (and, from the command line, in ``rotaux: error: ...`` with exit code 2)."""

import re

import pytest
import torch
from cli_utils import TINY_RUN, fit_tiny, read_metrics
from lightning import Trainer
from PIL import Image
from torch.utils.data import DataLoader

from rotaux.architecture import Architecture, CheckpointError
from rotaux.backbones import ResNet, WideResNet
from rotaux.cli import main
from rotaux.data import CIFAR10, ImageFolder, RotationInput, SSLDataModule, Synthetic
from rotaux.errors import RotauxError
from rotaux.methods import BYOL


@pytest.fixture(autouse=True)
def _run_in_tmp_path(tmp_path, monkeypatch):
    """A run that fails after the logger started leaves runs/ in the working folder."""
    monkeypatch.chdir(tmp_path)


def _image_folder(root, classes=("cat", "dog"), per_class=4, split="train", side=32):
    for class_index, name in enumerate(classes):
        folder = root / split / name
        folder.mkdir(parents=True)
        for index in range(per_class):
            Image.new("RGB", (side, side), (100 * class_index, index, 0)).save(
                folder / f"{index}.png"
            )
    return root


def _setup(root, image_size: int = 32, **source_options) -> SSLDataModule:
    data = SSLDataModule(
        ImageFolder(str(root), **source_options),
        image_size=image_size,
        batch_size=2,
        num_workers=0,
    )
    data.setup("fit")
    return data


def _cli_error(capsys, *args: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--model", "BYOL", *TINY_RUN, *args])
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_missing_data_root(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(RotauxError, match=f"Data root '{re.escape(str(missing))}' does not exist"):
        _setup(missing)


def test_root_without_train_folder(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(RotauxError, match="has no train/ folder.*train/<class>/<image>"):
        _setup(tmp_path)


def test_train_folder_without_class_folders(tmp_path):
    (tmp_path / "train").mkdir()
    Image.new("RGB", (32, 32)).save(tmp_path / "train" / "loose.png")
    with pytest.raises(RotauxError, match="holds no class folders"):
        _setup(tmp_path)


def test_empty_class_folder_is_named(tmp_path):
    _image_folder(tmp_path)
    (tmp_path / "train" / "empty").mkdir()
    (tmp_path / "train" / "empty" / "notes.txt").write_text("not an image")
    with pytest.raises(RotauxError, match=r"class folders without images: \['empty'\]"):
        _setup(tmp_path)


def test_corrupt_image_file_is_named(tmp_path):
    _image_folder(tmp_path)
    bad = tmp_path / "train" / "dog" / "broken.jpg"
    bad.write_bytes(b"this is not a jpeg" * 10)
    with pytest.raises(RotauxError, match="1 of 9 image files cannot be read") as info:
        _setup(tmp_path)
    assert str(bad) in str(info.value)
    assert "verify_images none" in str(info.value)


@pytest.mark.parametrize("with_val_folder", [False, True])
def test_skip_leaves_unreadable_images_out_and_counts_them(tmp_path, with_val_folder):
    _image_folder(tmp_path)
    if with_val_folder:
        _image_folder(tmp_path, split="val", per_class=2)
    bad = tmp_path / "train" / "dog" / "broken.jpg"
    bad.write_bytes(b"this is not a jpeg" * 10)
    with pytest.warns(UserWarning, match="1 of .* image files cannot be read") as caught:
        data = _setup(tmp_path, on_corrupt_image="skip")
    assert str(bad) in str(caught[0].message)
    # 8 readable training images (and 4 validation images when val/ exists), none of them bad
    training = data.eval_train_dataset()
    held_out = len(data.val_dataloader().dataset)
    assert len(training) + (0 if with_val_folder else held_out) == 8
    assert held_out == (4 if with_val_folder else 2)
    assert all(sample["image"].shape == (3, 32, 32) for sample in training)


def test_truncated_jpeg_is_caught_by_full_verification(tmp_path):
    _image_folder(tmp_path)
    cut = tmp_path / "train" / "cat" / "cut.jpg"
    Image.effect_noise((64, 64), 60).convert("RGB").save(cut, quality=95)
    cut.write_bytes(cut.read_bytes()[:-400])
    with pytest.raises(RotauxError, match="cannot be read") as info:
        _setup(tmp_path, verify_images="full")
    assert str(cut) in str(info.value) and "truncated" in str(info.value)


def test_val_classes_must_match_train_classes(tmp_path):
    _image_folder(tmp_path, classes=("cat", "dog", "fox"))
    _image_folder(tmp_path, classes=("cat", "dog", "wolf"), split="val")
    with pytest.raises(RotauxError, match=r"missing in val \['fox'\], only in val \['wolf'\]"):
        _setup(tmp_path)


def test_crop_larger_than_the_images(tmp_path):
    _image_folder(tmp_path, side=32)
    with pytest.raises(RotauxError, match="Crop size 64 is larger than the ImageFolder images"):
        _setup(tmp_path, image_size=64)
    data = SSLDataModule(Synthetic(size=8), batch_size=2, num_workers=0)
    data.rotation = RotationInput(crop_size=48)
    with pytest.raises(RotauxError, match="Crop size 48 .*--model.rotation_crop_size"):
        data.setup("fit")


def test_training_set_smaller_than_one_batch(tmp_path):
    data = SSLDataModule(Synthetic(size=8), batch_size=16, num_workers=0)
    with pytest.raises(RotauxError, match="has 8 images, fewer than one global batch"):
        data.setup("fit")


def test_cifar_without_download_names_root_and_imagefolder(tmp_path):
    data = SSLDataModule(CIFAR10(root=str(tmp_path), download=False), num_workers=0)
    with pytest.raises(RotauxError) as info:
        data.setup("fit")
    message = str(info.value)
    assert "Could not load CIFAR10 from --data.dataset.root" in message
    assert str(tmp_path) in message
    assert "--data.dataset ImageFolder --data.dataset.root" in message


def _byol(width: int, rotation_weight: float = 0.4) -> BYOL:
    return BYOL(
        backbone=ResNet(width=width, cifar_stem=True),
        proj_hidden_dim=16,
        proj_output_dim=8,
        pred_hidden_dim=16,
        rotation_weight=rotation_weight,
        rotation_hidden_dim=16,
    )


def test_checkpoint_of_another_architecture(tmp_path):
    checkpoint = {"state_dict": _byol(8).state_dict()}
    _byol(8).on_save_checkpoint(checkpoint)
    with pytest.raises(CheckpointError, match="BYOL with backbone ResNet.*width=8.*width=16"):
        _byol(16).on_load_checkpoint(checkpoint)
    _byol(8).on_load_checkpoint(checkpoint)  # the same architecture loads

    # the user's path: load_from_checkpoint with another width fails before any weight copy
    checkpoint["hyper_parameters"] = dict(_byol(8).hparams)
    checkpoint["pytorch-lightning_version"] = "2.4.0"
    path = tmp_path / "byol.ckpt"
    torch.save(checkpoint, path)
    with pytest.raises(RotauxError, match="config.yaml"):
        BYOL.load_from_checkpoint(
            path, backbone=ResNet(width=16, cifar_stem=True), weights_only=False
        )


def test_checkpoint_with_and_without_a_rotation_head():
    with_head, without_head = {}, {}
    _byol(8).on_save_checkpoint(with_head)
    _byol(8, rotation_weight=0.0).on_save_checkpoint(without_head)
    assert (with_head["rotaux_architecture"]["rotation_head"]) is True
    assert (without_head["rotaux_architecture"]["rotation_head"]) is False
    with pytest.raises(CheckpointError, match="has a rotation head .*built with rotation_weight 0"):
        _byol(8, rotation_weight=0.0).on_load_checkpoint(with_head)
    with pytest.raises(CheckpointError, match="has no rotation head .*rotation_weight > 0"):
        _byol(8).on_load_checkpoint(without_head)


def test_architecture_of_another_method_or_backbone_family_does_not_load():
    resnet, wide = ResNet(width=8), WideResNet(16, 1)
    with pytest.raises(CheckpointError, match="written by SimCLR .*this run builds BYOL"):
        Architecture("SimCLR", resnet).check_loads_into(Architecture("BYOL", resnet))
    with pytest.raises(CheckpointError, match="WideResNet"):
        Architecture("BYOL", resnet).check_loads_into(Architecture("BYOL", wide))
    # unknown rotation heads (None) are not compared
    Architecture("BYOL", resnet, None).check_loads_into(Architecture("BYOL", resnet, True))
    Architecture("BYOL", resnet, False).check_loads_into(Architecture("BYOL", resnet, None))


def test_rotaux_0_1_architecture_record_is_converted():
    legacy = {"method": "BYOL", "backbone": "resnet34", "cifar_stem": True, "backbone_width": 16}
    architecture = Architecture.from_checkpoint({"rotaux_architecture": legacy})
    assert architecture == Architecture("BYOL", ResNet("resnet34", cifar_stem=True, width=16))
    assert Architecture.from_checkpoint({}) is None


def test_cli_unknown_key(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--model", "BYOL", "--model.no_such_key", "1", *TINY_RUN])
    assert exit_info.value.code != 0
    assert "no_such_key" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("misspelt", "suggested"),
    [
        (["--model.rotation_wieght", "0.5"], "--model.rotation_weight"),
        (["--data.batchsize", "8"], "--data.batch_size"),
    ],
)
def test_cli_misspelt_option_gets_the_nearest_valid_one(capsys, misspelt, suggested):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--model", "BYOL", *TINY_RUN, *misspelt])
    assert exit_info.value.code != 0
    assert f"Did you mean {suggested}?" in capsys.readouterr().err


def test_misspelt_config_file_key_gets_the_nearest_valid_one(tmp_path, capsys):
    config = tmp_path / "typo.yaml"
    config.write_text("data:\n  batchsize: 8\n")
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(config), "--model", "BYOL", *TINY_RUN])
    assert "Did you mean --data.batch_size?" in capsys.readouterr().err


def test_cli_wrong_type(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--model", "BYOL", *TINY_RUN, "--data.batch_size", "abc"])
    assert exit_info.value.code != 0
    err = capsys.readouterr().err
    assert "data.batch_size" in err and "abc" in err


def test_cli_negative_rotation_weight(capsys):
    err = _cli_error(capsys, "--model.rotation_weight", "-0.5")
    assert "rotaux: error: rotation_weight must be >= 0" in err
    assert "Traceback" not in err


def test_cli_data_error(capsys, tmp_path):
    err = _cli_error(
        capsys, "--data.dataset", "ImageFolder", "--data.dataset.root", str(tmp_path / "missing")
    )
    assert "rotaux: error: Data root" in err and "does not exist" in err


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (["--model.backbone_width", "8"], "--model.backbone.width"),
        (["--model.cifar_stem", "true"], "--model.backbone.cifar_stem"),
        (["--data.synthetic_size", "48"], "--data.dataset.size"),
        (["--data.root", "data"], "--data.dataset.root"),
        (["--data.rotation_copies", "1"], "--model.rotation_copies"),
    ],
)
def test_cli_options_of_rotaux_0_1_name_their_new_place(capsys, old, new):
    err = _cli_error(capsys, *old)
    assert f"{old[0]} moved in rotaux 0.2: use {new}." in err


def test_rotation_weight_with_data_that_has_no_rotated_images():
    """The data module makes rotated images for the model it is set up with; data from
    elsewhere (a plain loader) without them is an error, not a silently plain run."""
    sample = {"views": [torch.randn(3, 32, 32)] * 2, "label": 0}
    loader = DataLoader([sample] * 4, batch_size=4)
    trainer = Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    with pytest.raises(RotauxError, match="rotation_weight > 0 but the batch carries no rotated"):
        trainer.fit(_byol(8), train_dataloaders=loader)


def test_cli_fit_with_rotation_sets_the_data_module_up_for_it(tmp_path):
    """The CLI path of the test above: the data module follows the model's rotation options,
    so every rotation source and copy count trains."""
    run = fit_tiny(
        tmp_path,
        "BYOL",
        "--model.rotation_source",
        "views",
        "--model.rotation_copies",
        "1",
        "--trainer.log_every_n_steps",
        "1",
    )
    logged = set().union(*read_metrics(run))
    assert {"train/rot_loss", "train/rot_acc"} <= logged
