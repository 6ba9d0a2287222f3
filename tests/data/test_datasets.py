import pytest
import torch
from PIL import Image

from rotaux.data import CIFAR10, CIFAR100, STL10, ImageFolder, Synthetic
from rotaux.data.sources.base import stratified_split
from rotaux.data.sources.image_files import CorruptImageError, load_rgb, verify_image_files
from rotaux.errors import RotauxError


def _folder_source(root, val_fraction=0.25, seed=0, verify="full"):
    return ImageFolder(str(root), val_fraction=val_fraction, split_seed=seed, verify_images=verify)


def _load_folder(root, val_fraction=0.25, seed=0, verify="full"):
    return _folder_source(root, val_fraction, seed, verify).load()


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
    source = _folder_source(root, val_fraction=0.5)
    splits = source.load()
    assert sorted(source.image_sides(splits.train)) == [20, 20, 20]
    assert source.image_sides(torch.utils.data.TensorDataset(torch.zeros(2))) == []


def test_sources_carry_the_published_statistics():
    assert CIFAR10().mean == (0.4914, 0.4822, 0.4465)
    assert CIFAR10().std == (0.2470, 0.2435, 0.2616)
    assert CIFAR100().mean == (0.5071, 0.4865, 0.4409)
    assert CIFAR100().std == (0.2673, 0.2564, 0.2762)
    assert ImageFolder().mean == (0.485, 0.456, 0.406)
    assert ImageFolder().std == (0.229, 0.224, 0.225)
    sources = (CIFAR10(), CIFAR100(), STL10(), ImageFolder())
    assert [source.image_size for source in sources] == [32, 32, 96, 224]
    # CIFAR and STL-10 have one fixed side; an image folder's images vary
    assert [source.native_size for source in sources] == [32, 32, 96, None]


def test_synthetic_split_sizes():
    source = Synthetic(size=40, classes=4, side=16, val_fraction=0.25)
    splits = source.load()
    assert (len(splits.train), len(splits.val)) == (40, 10)
    assert splits.train[0][0].shape == (3, 16, 16)
    assert (source.image_size, source.native_size) == (16, 16)
    # the validation images are drawn with the next seed
    assert not torch.equal(splits.train.images[:10], splits.val.images)


def test_synthetic_validation_has_at_least_one_image_per_class():
    splits = Synthetic(size=20, classes=8, side=8, val_fraction=0.1).load()
    assert len(splits.val) == 8
    assert splits.classes == [f"class_{index}" for index in range(8)]


def test_synthetic_rejects_empty_sizes():
    with pytest.raises(RotauxError, match="size"):
        Synthetic(size=0)
