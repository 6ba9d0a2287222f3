"""UnlabeledFolder: every image under a folder at any depth, label -1, optional hold-out."""

import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from rotaux.data import SSLDataModule, UnlabeledFolder
from rotaux.data.sources.base import held_out_split
from rotaux.errors import RotauxError


def _save(path, side=40, shade=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (side, side + 2), (shade, 100, 200)).save(path)


def _nested(root):
    """7 images at depths 0 to 3, plus files that are not images or are hidden."""
    for relative in [
        "a.png",
        "b.JPG",
        "x/c.png",
        "x/y/d.jpeg",
        "x/y/z/e.png",
        "w/f.bmp",
        "w/g.webp",
    ]:
        _save(root / relative, shade=len(relative))
    (root / "notes.txt").write_text("not an image")
    _save(root / ".cache" / "hidden.png")
    _save(root / "x" / "._c.png")
    return root


def test_finds_every_image_at_any_depth_with_label_minus_one(tmp_path):
    splits = UnlabeledFolder(str(_nested(tmp_path))).load()
    paths = splits.train.dataset.paths
    names = sorted(path.rsplit("/", 1)[1] for path in paths)
    assert names == ["a.png", "b.JPG", "c.png", "d.jpeg", "e.png", "f.bmp", "g.webp"]
    assert splits.classes == []
    assert [splits.train[i][1] for i in range(len(splits.train))] == [-1] * 7
    image, _ = splits.train[0]
    assert image.mode == "RGB" and image.size == (40, 42)
    # val_fraction 0 (the default): no validation split
    assert len(splits.val) == 0


def test_val_fraction_holds_out_a_seeded_share(tmp_path):
    root = tmp_path / "images"
    for index in range(20):
        _save(root / f"{index % 3}" / f"{index}.png", side=34)
    first = UnlabeledFolder(str(root), val_fraction=0.25, split_seed=3).load()
    again = UnlabeledFolder(str(root), val_fraction=0.25, split_seed=3).load()
    other = UnlabeledFolder(str(root), val_fraction=0.25, split_seed=4).load()
    assert (len(first.train), len(first.val)) == (15, 5)
    assert first.val.indices == again.val.indices
    assert first.val.indices != other.val.indices
    assert set(first.train.indices).isdisjoint(first.val.indices)
    assert sorted(first.train.indices + first.val.indices) == list(range(20))


def test_held_out_split_by_hand():
    # unlabeled: a seeded uniform draw of round(0.3 * 10) = 3 images
    train, val = held_out_split([-1] * 10, 0.3, seed=0)
    order = torch.randperm(10, generator=torch.Generator().manual_seed(0))
    assert val == sorted(order[:3].tolist()) and train == sorted(order[3:].tolist())
    # all labelled: stratified, one of each class of two
    train, val = held_out_split([0, 0, 1, 1], 0.5, seed=0)
    assert sorted([0, 1, 2, 3][i] // 2 for i in val) == [0, 1]
    assert held_out_split([-1, -1], 0.0, seed=0) == ([0, 1], [])
    with pytest.raises(RotauxError, match="val_fraction"):
        held_out_split([-1, -1], 1.0, seed=0)


def test_trains_through_the_data_module_with_unlabeled_batches(tmp_path):
    root = tmp_path / "images"
    for index in range(8):
        _save(root / "deep" / "er" / f"{index}.png", side=36)
    data = SSLDataModule(UnlabeledFolder(str(root)), image_size=32, batch_size=4, num_workers=0)
    data.setup("fit")
    assert data.evaluation_data == "none" and data.num_classes == 0
    batch = next(iter(data.train_dataloader()))
    assert [tuple(view.shape) for view in batch["views"]] == [(4, 3, 32, 32)] * 2
    assert batch["label"].tolist() == [-1] * 4
    assert len(data.val_dataloader()) == 0


def test_corrupt_images_are_named_or_skipped(tmp_path):
    root = _nested(tmp_path / "images")
    (root / "x" / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(RotauxError, match="broken.png"):
        UnlabeledFolder(str(root)).load()
    with pytest.warns(UserWarning, match="broken.png"):
        splits = UnlabeledFolder(str(root), on_corrupt_image="skip").load()
    assert len(splits.train) == 7


def test_missing_or_empty_folders_are_refused(tmp_path):
    with pytest.raises(RotauxError, match="does not exist"):
        UnlabeledFolder(str(tmp_path / "nowhere")).load()
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "readme.txt").write_text("")
    with pytest.raises(RotauxError, match=r"holds no image files at any depth .*\.png"):
        UnlabeledFolder(str(tmp_path / "empty")).load()


def test_a_crop_larger_than_the_images_is_refused(tmp_path):
    root = tmp_path / "images"
    for index in range(6):
        _save(root / "a" / f"{index}.png", side=24)
    data = SSLDataModule(UnlabeledFolder(str(root)), image_size=32, batch_size=2, num_workers=0)
    with pytest.raises(RotauxError, match="Crop size 32 is larger than the UnlabeledFolder"):
        data.setup("fit")


def test_loader_workers_read_the_images(tmp_path):
    root = tmp_path / "images"
    for index in range(4):
        _save(root / f"{index}.png", side=32, shade=10 * index)
    splits = UnlabeledFolder(str(root)).load()
    loader = DataLoader(splits.train, batch_size=None, num_workers=1)
    shades = sorted(image.getpixel((0, 0))[0] for image, _ in loader)
    assert shades == [0, 10, 20, 30]
