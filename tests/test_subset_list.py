"""benchmarks/subset_list.py keeps the dev split's validation images and draws a seeded subset of
every class's training images."""

import csv
import sys
from pathlib import Path

import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import subset_list  # noqa: E402

from rotaux.data import FileList, ImageFolder  # noqa: E402


def _folder(root: Path) -> Path:
    for label in ("cat", "dog"):
        (root / "train" / label).mkdir(parents=True)
        for index in range(10):
            Image.new("RGB", (8, 8), (index * 20, 0, 0)).save(
                root / "train" / label / f"{index}.png"
            )
    return root


def test_the_list_keeps_the_dev_split_and_draws_per_class(tmp_path):
    root = _folder(tmp_path / "images")
    out = tmp_path / "subset.csv"
    subset_list.main(["--root", str(root), "--per-class", "3", "--out", str(out)])
    rows = list(csv.DictReader(out.open()))
    full = ImageFolder(str(root), val_fraction=0.1, split_seed=0, verify_images="none").load()
    val_paths = {full.val.dataset.samples[index][0] for index in full.val.indices}
    assert {row["path"] for row in rows if row["split"] == "val"} == val_paths
    train = [row for row in rows if row["split"] == "train"]
    assert sorted(row["label"] for row in train) == ["cat"] * 3 + ["dog"] * 3
    assert not {row["path"] for row in train} & val_paths
    # the list trains as a FileList with the same classes
    splits = FileList(
        str(out), label_column="label", split_column="split", verify_images="none"
    ).load()
    assert (len(splits.train), len(splits.val), splits.classes) == (6, 2, ["cat", "dog"])
    subset_list.main(["--root", str(root), "--per-class", "3", "--out", str(tmp_path / "b.csv")])
    assert (tmp_path / "b.csv").read_text() == out.read_text()


def test_asking_for_more_images_than_a_class_has_is_refused(tmp_path):
    root = _folder(tmp_path / "images")
    with pytest.raises(SystemExit, match="only 9 images"):
        subset_list.main(["--root", str(root), "--per-class", "50", "--out", str(tmp_path / "x")])
