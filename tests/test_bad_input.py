"""Every way a user can get the configuration or the data wrong ends in a message that names the
problem (and, from the command line, in ``rotaux: error: ...`` with exit code 2)."""

import re

import pytest
import torch
from cli_utils import TINY_RUN, fit_tiny
from PIL import Image

from rotaux.cli import main
from rotaux.data import SSLDataModule
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


def _setup(root, **kwargs) -> SSLDataModule:
    options = dict(dataset="imagefolder", root=str(root), image_size=32, batch_size=2)
    options.update(num_workers=0, download=False, **kwargs)
    data = SSLDataModule(**options)
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
    with pytest.raises(RotauxError, match="Crop size 64 is larger than the imagefolder images"):
        _setup(tmp_path, image_size=64)
    with pytest.raises(RotauxError, match="Crop size 48 .*rotation_crop_size"):
        SSLDataModule(
            "synthetic",
            batch_size=2,
            num_workers=0,
            synthetic_size=8,
            with_rotation=True,
            rotation_crop_size=48,
        ).setup("fit")


def test_training_set_smaller_than_one_batch(tmp_path):
    data = SSLDataModule("synthetic", batch_size=16, num_workers=0, synthetic_size=8)
    with pytest.raises(RotauxError, match="has 8 images, fewer than one global batch"):
        data.setup("fit")


def test_cifar_without_download_names_root_and_imagefolder(tmp_path):
    data = SSLDataModule("cifar10", root=str(tmp_path), download=False, num_workers=0)
    with pytest.raises(RotauxError) as info:
        data.setup("fit")
    message = str(info.value)
    assert "--data.root" in message and str(tmp_path) in message
    assert "--data.dataset imagefolder" in message


def _byol(width: int) -> BYOL:
    return BYOL(
        backbone_width=width,
        cifar_stem=True,
        proj_hidden_dim=16,
        proj_output_dim=8,
        pred_hidden_dim=16,
        rotation_hidden_dim=16,
    )


def test_checkpoint_of_another_architecture(tmp_path):
    checkpoint = {"state_dict": _byol(8).state_dict()}
    _byol(8).on_save_checkpoint(checkpoint)
    with pytest.raises(RotauxError, match="'backbone_width': 8.*'backbone_width': 16"):
        _byol(16).on_load_checkpoint(checkpoint)
    _byol(8).on_load_checkpoint(checkpoint)  # the same architecture loads

    # the user's path: load_from_checkpoint with another width fails before any weight copy
    checkpoint["hyper_parameters"] = dict(_byol(8).hparams)
    checkpoint["pytorch-lightning_version"] = "2.4.0"
    path = tmp_path / "byol.ckpt"
    torch.save(checkpoint, path)
    with pytest.raises(RotauxError, match="config.yaml"):
        BYOL.load_from_checkpoint(path, backbone_width=16, weights_only=False)


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
        capsys, "--data.dataset", "imagefolder", "--data.root", str(tmp_path / "missing")
    )
    assert "rotaux: error: Data root" in err and "does not exist" in err


def test_cli_rotation_weight_without_rotation_data(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        fit_tiny(tmp_path, "BYOL", "--data.with_rotation", "false")
    assert exit_info.value.code == 2
    assert "rotaux: error: rotation_weight > 0 but the batch carries no rotated images" in (
        capsys.readouterr().err
    )
