"""`rotaux imagenet100` on a fake ImageNet-1k of tiny class folders."""

from __future__ import annotations

import re

import pytest
from PIL import Image

from rotaux.data import ImageFolder, Shards
from rotaux.data.imagenet100 import imagenet100_classes, main

EXTRA_CLASSES = ["n01440764", "n15075141"]
"""ImageNet-1k classes outside ImageNet-100."""


def test_the_class_list_is_cmc_s_hundred_wordnet_ids():
    classes = imagenet100_classes()
    assert len(classes) == len(set(classes)) == 100
    assert all(re.fullmatch(r"n\d{8}", wnid) for wnid in classes)
    # CMC's imagenet100.txt starts and ends so
    assert classes[:3] == ["n02869837", "n01749939", "n02488291"]
    assert classes[-1] == "n02090622"
    assert not set(EXTRA_CLASSES) & set(classes)


@pytest.fixture
def fake_imagenet(tmp_path):
    """train/ and val/ with one 8x8 JPEG in each of the 100 classes and 2 others."""
    root = tmp_path / "imagenet"
    for split in ("train", "val"):
        for number, wnid in enumerate(imagenet100_classes() + EXTRA_CLASSES):
            folder = root / split / wnid
            folder.mkdir(parents=True)
            Image.new("RGB", (8, 8), (2 * number, 0, 0)).save(folder / f"{wnid}_{split}.JPEG")
    return root


@pytest.mark.parametrize("mode", ["symlink", "copy"])
def test_builds_the_hundred_class_folder(fake_imagenet, tmp_path, mode):
    out = tmp_path / "imagenet100"
    assert main(["--imagenet", str(fake_imagenet), "--out", str(out), "--mode", mode]) == 0
    for split in ("train", "val"):
        folders = sorted((out / split).iterdir())
        assert [folder.name for folder in folders] == sorted(imagenet100_classes())
        assert all(folder.is_symlink() == (mode == "symlink") for folder in folders)
    splits = ImageFolder(str(out)).load()
    assert splits.classes == sorted(imagenet100_classes())
    assert len(splits.train) == len(splits.val) == 100
    # each image is its own class's: its red level is twice the class's number, give or take
    # JPEG's rounding
    order = imagenet100_classes()
    for index in (5, 77):
        image, label = splits.val[index]
        assert abs(image.getpixel((0, 0))[0] - 2 * order.index(splits.classes[label])) <= 1


def test_builds_shards(fake_imagenet, tmp_path):
    out = tmp_path / "imagenet100"
    command = ["--imagenet", str(fake_imagenet), "--out", str(out), "--mode", "shards"]
    assert main(command) == 0
    splits = Shards(str(out)).load()
    assert splits.classes == sorted(imagenet100_classes())
    assert len(splits.train) == len(splits.val) == 100
    names = {splits.train.encoded(index)[2] for index in range(100)}
    assert names == {f"train/{wnid}/{wnid}_train.JPEG" for wnid in imagenet100_classes()}


def test_a_missing_class_folder_is_named(fake_imagenet, tmp_path, capsys):
    missing = imagenet100_classes()[42]
    (fake_imagenet / "val" / missing / f"{missing}_val.JPEG").unlink()
    (fake_imagenet / "val" / missing).rmdir()
    out = tmp_path / "imagenet100"
    assert main(["--imagenet", str(fake_imagenet), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert f"lacks 1 of the ImageNet-100 class folders: val/{missing}." in error
    assert not out.exists()


def test_an_imagenet_without_val_or_at_all_is_refused(tmp_path, capsys):
    assert main(["--imagenet", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "partial" / "train").mkdir(parents=True)
    assert main(["--imagenet", str(tmp_path / "partial"), "--out", str(tmp_path / "o")]) == 2
    assert "has no val/ folder" in capsys.readouterr().err
