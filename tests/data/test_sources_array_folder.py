"""ArrayFolder: multi-channel .npy and TIFF images, per-channel normalisation, one channel count
per dataset, and the backbone's input channels."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from rotaux.backbones import ResNet, TimmModel
from rotaux.data import ArrayFolder, SSLDataModule
from rotaux.data.sources.arrays import array_shape, read_array
from rotaux.errors import RotauxError
from rotaux.methods import BYOL


def _arrays(root, count=6, channels=4, side=32, dtype=np.uint16, layout="CHW", seed=0):
    """``count`` random arrays in ``root``; returns them in file order."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    high = 256 if dtype == np.uint8 else 4000
    arrays = []
    for index in range(count):
        array = rng.integers(0, high, (channels, side, side)).astype(dtype)
        arrays.append(array)
        stored = array if layout == "CHW" else np.moveaxis(array, 0, -1)
        np.save(root / f"{index:02d}.npy", stored)
    return arrays


def test_npy_in_both_layouts_and_tiff_become_chw_tensors(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    array = np.arange(3 * 5 * 7, dtype=np.uint16).reshape(3, 5, 7)
    np.save(tmp_path / "chw.npy", array)
    np.save(tmp_path / "hwc.npy", np.moveaxis(array, 0, -1))
    np.save(tmp_path / "gray.npy", array[0].astype(np.uint8))
    tifffile.imwrite(tmp_path / "contig.tif", np.moveaxis(array, 0, -1), photometric="rgb")
    tifffile.imwrite(
        tmp_path / "planar.tif", array, photometric="minisblack", planarconfig="separate"
    )
    expected = torch.from_numpy(array.astype(np.float32))
    for name, layout in [("chw.npy", "CHW"), ("hwc.npy", "HWC"), ("contig.tif", "CHW"),
                         ("planar.tif", "HWC")]:  # fmt: skip
        # TIFF files mark their band axis, so the layout option does not apply to them
        image = read_array(str(tmp_path / name), layout)
        assert image.dtype == torch.float32
        torch.testing.assert_close(image, expected, rtol=0, atol=0)
        assert array_shape(str(tmp_path / name), layout) == (3, 5, 7)
    gray = read_array(str(tmp_path / "gray.npy"))
    assert gray.dtype == torch.uint8 and gray.shape == (1, 5, 7)


def test_unlabeled_and_class_folder_layouts(tmp_path):
    _arrays(tmp_path / "flat" / "a" / "b", count=3)
    _arrays(tmp_path / "flat", count=2)
    splits = ArrayFolder(str(tmp_path / "flat")).load()
    assert len(splits.train) == 5 and splits.classes == [] and len(splits.val) == 0
    assert {splits.train[i][1] for i in range(5)} == {-1}

    _arrays(tmp_path / "classes" / "water", count=4)
    _arrays(tmp_path / "classes" / "forest" / "deeper", count=4)
    source = ArrayFolder(str(tmp_path / "classes"), class_folders=True, val_fraction=0.25)
    splits = source.load()
    assert splits.classes == ["forest", "water"]
    assert (len(splits.train), len(splits.val)) == (6, 2)
    assert sorted(splits.val[i][1] for i in range(2)) == [0, 1]
    image, _ = splits.train[0]
    assert image.shape == (4, 32, 32) and image.dtype == torch.float32


def test_class_folders_refuse_loose_files(tmp_path):
    _arrays(tmp_path / "cls", count=2)
    _arrays(tmp_path, count=1)
    with pytest.raises(RotauxError, match="directly in"):
        ArrayFolder(str(tmp_path), class_folders=True).load()


def test_per_channel_normalisation_by_hand(tmp_path):
    arrays = _arrays(tmp_path / "a", count=4, channels=4, side=32)
    mean, std = (1000.0, 2000.0, 0.0, 500.0), (100.0, 1000.0, 4000.0, 250.0)
    source = ArrayFolder(str(tmp_path / "a"), val_fraction=0.25, split_seed=0)
    data = SSLDataModule(source, batch_size=2, num_workers=0, image_size=32, mean=mean, std=std)
    data.setup("fit")
    loaded = next(iter(data.val_dataloader()))
    batch = data.on_after_batch_transfer(loaded, 0)
    (index,) = data._val.base.indices
    pixel = arrays[index][:, 5, 7].astype(np.float64)
    expected = [(pixel[c] - mean[c]) / std[c] for c in range(4)]
    assert batch["image"][0, :, 5, 7].tolist() == pytest.approx(expected, rel=1e-6)

    # uint8 arrays are normalised as 8-bit images: statistics in [0, 1] units
    arrays = _arrays(tmp_path / "b", count=4, channels=2, dtype=np.uint8)
    data = SSLDataModule(
        ArrayFolder(str(tmp_path / "b"), val_fraction=0.25),
        batch_size=2, num_workers=0, image_size=32, mean=(0.5, 0.25), std=(0.2, 0.1),
    )  # fmt: skip
    data.setup("fit")
    batch = data.on_after_batch_transfer(next(iter(data.val_dataloader())), 0)
    (index,) = data._val.base.indices
    value = arrays[index][1, 0, 0] / 255
    assert batch["image"][0, 1, 0, 0].item() == pytest.approx((value - 0.25) / 0.1, rel=1e-6)


def test_training_batches_have_every_channel_on_both_augmentation_paths(tmp_path):
    _arrays(tmp_path, count=8, channels=13, side=40)
    for augment_on in ("loader", "device"):
        data = SSLDataModule(
            ArrayFolder(str(tmp_path)),
            batch_size=4, num_workers=0, image_size=32, mean=(1000.0,) * 13, std=(500.0,) * 13,
            augment_on=augment_on,
        )  # fmt: skip
        data.setup("fit")
        batch = data.on_after_batch_transfer(next(iter(data.train_dataloader())), 0)
        assert [tuple(view.shape) for view in batch["views"]] == [(4, 13, 32, 32)] * 2
        # float arrays are not clamped to [0, 1]: normalised values keep their spread
        assert batch["views"][0].abs().max() > 3


def test_statistics_are_required_and_suggested(tmp_path):
    arrays = _arrays(tmp_path, count=3, channels=2, side=8)
    with pytest.raises(RotauxError) as error:
        SSLDataModule(ArrayFolder(str(tmp_path)), batch_size=2)
    message = str(error.value)
    assert "give --data.mean and --data.std with one value per channel" in message
    pixels = np.stack(arrays).astype(np.float64)
    first_mean = pixels[:, 0].mean()
    assert f"--data.mean '[{first_mean:.4g}, " in message
    assert f", {pixels[:, 1].std():.4g}]'" in message


def test_statistics_must_match_the_channel_count(tmp_path):
    _arrays(tmp_path, count=4, channels=4)
    data = SSLDataModule(
        ArrayFolder(str(tmp_path)), batch_size=2, num_workers=0, image_size=32,
        mean=(0.0,) * 3, std=(1.0,) * 3,
    )  # fmt: skip
    with pytest.raises(RotauxError, match="ArrayFolder images have 4 channels but --data.mean"):
        data.setup("fit")


def test_mixed_channel_counts_are_refused_before_training_naming_the_files(tmp_path):
    _arrays(tmp_path, count=4, channels=4)
    np.save(tmp_path / "odd.npy", np.zeros((3, 32, 32), np.uint16))
    with pytest.raises(RotauxError) as error:
        ArrayFolder(str(tmp_path)).load()
    message = str(error.value)
    assert "3 channels:" in message and "odd.npy" in message and "4 channels:" in message
    assert "--data.dataset.layout HWC" in message


def test_a_file_with_other_channels_outside_the_sample_is_named_when_a_batch_meets_it(
    tmp_path, monkeypatch
):
    _arrays(tmp_path, count=6, channels=4)
    np.save(tmp_path / "99_odd.npy", np.zeros((5, 32, 32), np.uint16))
    # only the first file is checked before training
    monkeypatch.setattr("rotaux.data.sources.array_folder.CHANNEL_CHECK_FILES", 1)
    splits = ArrayFolder(str(tmp_path)).load()
    loader = DataLoader(splits.train, batch_size=7, num_workers=0)
    with pytest.raises(RotauxError, match=r"99_odd.npy has 5 channels, but the dataset's .* 4"):
        next(iter(loader))


def test_a_crop_larger_than_the_arrays_is_refused(tmp_path):
    _arrays(tmp_path, count=4, channels=2, side=24)
    data = SSLDataModule(
        ArrayFolder(str(tmp_path)), batch_size=2, num_workers=0, image_size=32,
        mean=(0.0, 0.0), std=(1.0, 1.0),
    )  # fmt: skip
    with pytest.raises(RotauxError, match="Crop size 32 is larger than the ArrayFolder images"):
        data.setup("fit")


def test_unreadable_and_badly_shaped_arrays_are_named(tmp_path):
    (tmp_path / "bad.npy").write_bytes(b"garbage")
    with pytest.raises(RotauxError, match="Cannot read .*bad.npy"):
        read_array(str(tmp_path / "bad.npy"))
    np.save(tmp_path / "video.npy", np.zeros((2, 3, 8, 8), np.uint8))
    with pytest.raises(RotauxError, match=r"video.npy holds an array of shape \(2, 3, 8, 8\)"):
        read_array(str(tmp_path / "video.npy"))


def _byol(backbone):
    return BYOL(backbone=backbone, proj_hidden_dim=8, pred_hidden_dim=8, rotation_hidden_dim=8)


@pytest.mark.parametrize(
    ("backbone", "option"),
    [
        (ResNet(width=8, cifar_stem=True), "--model.backbone.channels 13"),
        (TimmModel("resnet10t"), "--model.backbone.options '{\"in_chans\": 13}'"),
    ],
)
def test_a_backbone_with_other_input_channels_is_told_how_to_take_them(tmp_path, backbone, option):
    _arrays(tmp_path, count=4, channels=13)
    data = SSLDataModule(
        ArrayFolder(str(tmp_path)), batch_size=2, num_workers=0, image_size=32,
        mean=(0.0,) * 13, std=(1.0,) * 13,
    )  # fmt: skip
    data.trainer = type("Stand", (), {"lightning_module": _byol(backbone), "world_size": 1})()
    with pytest.raises(RotauxError) as error:
        data.setup("fit")
    message = str(error.value)
    assert "takes 3-channel images but the data has 13 channels" in message
    assert option in message
