import pytest
import torch
from PIL import Image

from rotaux.data.datasets import (
    PRESETS,
    CorruptImageError,
    image_sides,
    load_datasets,
    load_rgb,
    stratified_split,
    verify_image_files,
)
from rotaux.errors import RotauxError


def _load_folder(root, val_fraction=0.25, seed=0, verify="full"):
    return load_datasets(
        "imagefolder",
        str(root),
        download=False,
        val_fraction=val_fraction,
        split_seed=seed,
        verify_images=verify,
        synthetic_size=0,
        synthetic_classes=0,
        image_size=32,
    )


def _image_folder(root, counts=(8, 8, 8), side=40):
    for class_index, count in enumerate(counts):
        folder = root / "train" / f"class_{class_index}"
        folder.mkdir(parents=True)
        for index in range(count):
            Image.new("RGB", (side, side + index), (class_index * 80, 0, 0)).save(
                folder / f"{index}.png"
            )
    return root


def test_stratified_split_holds_out_a_fraction_of_every_class():
    targets = [0] * 10 + [1] * 20 + [2] * 3 + [3] * 1
    train, val = stratified_split(targets, val_fraction=0.2, seed=0)
    held_out = torch.bincount(torch.tensor(targets)[val], minlength=4).tolist()
    # round(0.2 n) per class, at least one of a class with two or more images, never all of it
    assert held_out == [2, 4, 1, 0]
    assert sorted(train + val) == list(range(len(targets)))
    assert not set(train) & set(val)
    assert train == sorted(train) and val == sorted(val)


def test_stratified_split_is_seeded():
    targets = [index % 3 for index in range(60)]
    assert stratified_split(targets, 0.25, seed=1) == stratified_split(targets, 0.25, seed=1)
    assert stratified_split(targets, 0.25, seed=1) != stratified_split(targets, 0.25, seed=2)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.5])
def test_stratified_split_rejects_fractions_outside_zero_one(fraction):
    with pytest.raises(RotauxError, match="val_fraction"):
        stratified_split([0, 1, 0, 1], fraction, seed=0)


def test_image_folder_split_covers_every_class_and_is_reproducible(tmp_path):
    root = _image_folder(tmp_path, counts=(8, 12, 4))
    splits = _load_folder(root)
    assert splits.classes == ["class_0", "class_1", "class_2"]
    train_paths = {splits.train.dataset.samples[i][0] for i in splits.train.indices}
    val_paths = {splits.val.dataset.samples[i][0] for i in splits.val.indices}
    assert not train_paths & val_paths
    assert len(train_paths | val_paths) == 24
    assert sorted(label for _, label in splits.val) == [0, 0, 1, 1, 1, 2]
    image, label = splits.train[0]
    assert isinstance(image, Image.Image) and image.mode == "RGB" and label == 0
    assert _load_folder(root).val.indices == splits.val.indices
    other_seeds = [_load_folder(root, seed=seed).val.indices for seed in range(1, 4)]
    assert any(indices != splits.val.indices for indices in other_seeds)


def test_load_rgb_converts_every_mode_to_rgb(tmp_path):
    Image.new("L", (5, 4), 7).save(tmp_path / "gray.png")
    Image.new("RGBA", (5, 4), (1, 2, 3, 4)).save(tmp_path / "alpha.png")
    for name in ("gray.png", "alpha.png"):
        image = load_rgb(str(tmp_path / name))
        assert image.mode == "RGB" and image.size == (5, 4)


def test_verify_header_mode_misses_truncated_files_that_full_mode_catches(tmp_path):
    path = tmp_path / "cut.jpg"
    Image.effect_noise((64, 64), 50).convert("RGB").save(path, quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    verify_image_files([str(path)], "header")
    verify_image_files([str(path)], "none")
    with pytest.raises(CorruptImageError, match="1 of 1 image files cannot be read"):
        verify_image_files([str(path)], "full")


def test_image_sides_reads_the_shorter_side_from_headers(tmp_path):
    root = _image_folder(tmp_path, counts=(3,), side=20)
    splits = _load_folder(root, val_fraction=0.5)
    assert sorted(image_sides(splits.train)) == [20, 20, 20]
    assert image_sides(torch.utils.data.TensorDataset(torch.zeros(2))) == []


def test_presets_match_the_published_statistics():
    assert PRESETS["cifar10"].mean == (0.4914, 0.4822, 0.4465)
    assert PRESETS["cifar10"].std == (0.2470, 0.2435, 0.2616)
    assert PRESETS["imagefolder"].mean == (0.485, 0.456, 0.406)
    assert PRESETS["imagefolder"].std == (0.229, 0.224, 0.225)
    assert [PRESETS[name].image_size for name in ("cifar100", "stl10", "imagefolder")] == [
        32,
        96,
        224,
    ]


def test_synthetic_split_sizes():
    splits = load_datasets(
        "synthetic",
        "unused",
        download=False,
        val_fraction=0.25,
        split_seed=0,
        verify_images="full",
        synthetic_size=40,
        synthetic_classes=4,
        image_size=16,
    )
    assert (len(splits.train), len(splits.val)) == (40, 10)
    assert splits.train[0][0].shape == (3, 16, 16)
    assert not torch.equal(splits.train.images[:10], splits.val.images)
