"""FileList: images named in a CSV or text file, optional labels and split column."""

from pathlib import Path

import pytest
import yaml
from PIL import Image

from rotaux.cli import main
from rotaux.data import FileList, SSLDataModule
from rotaux.errors import RotauxError


def _images(folder, names, side=36):
    for index, name in enumerate(names):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (side, side), (10 * index, 0, 0)).save(path)


def _csv(path, header, rows):
    path.write_text("\n".join([",".join(header), *(",".join(row) for row in rows)]) + "\n")
    return str(path)


def test_csv_with_labels_gives_sorted_classes_and_indices(tmp_path):
    _images(tmp_path / "img", [f"{i}.png" for i in range(6)])
    labels = ["dog", "cat", "dog", "eel", "cat", "dog"]
    listed = _csv(
        tmp_path / "list.csv",
        ["file", "species"],
        [[f"img/{i}.png", label] for i, label in enumerate(labels)],
    )
    splits = FileList(listed, path_column="file", label_column="species").load()
    assert splits.classes == ["cat", "dog", "eel"]
    assert splits.train.dataset.targets == [1, 0, 1, 2, 0, 1]
    image, label = splits.train[3]
    assert label == 2 and image.getpixel((0, 0)) == (30, 0, 0)
    assert len(splits.val) == 0


def test_integer_labels_sort_numerically(tmp_path):
    _images(tmp_path, ["a.png", "b.png", "c.png"])
    listed = _csv(
        tmp_path / "l.csv", ["path", "y"], [["a.png", "10"], ["b.png", "2"], ["c.png", "1"]]
    )
    splits = FileList(listed, label_column="y").load()
    assert splits.classes == ["1", "2", "10"]
    assert splits.train.dataset.targets == [2, 1, 0]


def test_split_column_decides_the_validation_rows(tmp_path):
    _images(tmp_path, [f"{i}.png" for i in range(5)])
    rows = [[f"{i}.png", "val" if i in (1, 3) else " Train "] for i in range(5)]
    listed = _csv(tmp_path / "l.csv", ["path", "split"], rows)
    splits = FileList(listed, split_column="split").load()
    assert splits.train.indices == [0, 2, 4] and splits.val.indices == [1, 3]
    assert splits.classes == [] and splits.val[0][1] == -1


def test_val_fraction_is_stratified_by_label(tmp_path):
    _images(tmp_path, [f"{i}.png" for i in range(8)])
    rows = [[f"{i}.png", "ab"[i % 2]] for i in range(8)]
    listed = _csv(tmp_path / "l.csv", ["path", "label"], rows)
    splits = FileList(listed, label_column="label", val_fraction=0.25, split_seed=1).load()
    assert (len(splits.train), len(splits.val)) == (6, 2)
    assert sorted(splits.val[i][1] for i in range(2)) == [0, 1]


def test_text_list_relative_to_its_folder_or_to_base_dir(tmp_path):
    _images(tmp_path / "data" / "deep", ["a.png", "b.png", "c.png"])
    listing = tmp_path / "data" / "files.txt"
    listing.write_text("# my images\ndeep/a.png\n\n  deep/b.png  \ndeep/c.png\n")
    splits = FileList(str(listing)).load()
    assert len(splits.train) == 3 and splits.classes == []
    assert splits.train[1][1] == -1
    elsewhere = tmp_path / "lists" / "files.txt"
    elsewhere.parent.mkdir()
    elsewhere.write_text("deep/a.png\n")
    assert len(FileList(str(elsewhere), base_dir=str(tmp_path / "data")).load().train) == 1


def test_empty_list_is_refused(tmp_path):
    listing = tmp_path / "files.txt"
    listing.write_text("# nothing yet\n\n")
    with pytest.raises(RotauxError, match="files.txt lists no images"):
        FileList(str(listing)).load()
    header_only = _csv(tmp_path / "l.csv", ["path", "label"], [])
    with pytest.raises(RotauxError, match="lists no images"):
        FileList(header_only, label_column="label").load()


def test_missing_label_values_name_their_lines(tmp_path):
    _images(tmp_path, ["a.png", "b.png", "c.png", "d.png"])
    listed = _csv(
        tmp_path / "l.csv",
        ["path", "label"],
        [["a.png", "x"], ["b.png", ""], ["c.png", "y"], ["d.png", "  "]],
    )
    # the header is line 1, so rows b and d are lines 3 and 5
    with pytest.raises(RotauxError, match=r"lines 3, 5 have no label in column 'label'"):
        FileList(listed, label_column="label").load()


def test_missing_files_are_listed_with_their_lines(tmp_path):
    _images(tmp_path, ["real.png"])
    rows = [["real.png"]] + [[f"gone_{i}.png"] for i in range(12)]
    listed = _csv(tmp_path / "l.csv", ["path"], rows)
    with pytest.raises(RotauxError) as error:
        FileList(listed).load()
    message = str(error.value)
    assert "12 of the 13 files listed" in message
    assert f"line 3: {tmp_path / 'gone_0.png'}" in message
    assert "gone_9.png" in message and "gone_10.png" not in message
    assert "... and 2 more" in message and "--data.dataset.base_dir" in message


def test_wrong_columns_and_options_are_refused(tmp_path):
    _images(tmp_path, ["a.png"])
    listed = _csv(tmp_path / "l.csv", ["path", "label"], [["a.png", "x"]])
    with pytest.raises(RotauxError, match=r"no column 'klass' \(its header: \['path', 'label'\]"):
        FileList(listed, label_column="klass").load()
    with pytest.raises(RotauxError, match="does not exist"):
        FileList(str(tmp_path / "none.csv")).load()
    text = tmp_path / "l.txt"
    text.write_text("a.png\n")
    with pytest.raises(RotauxError, match="plain-text list"):
        FileList(str(text), label_column="label").load()
    split = _csv(tmp_path / "s.csv", ["path", "split"], [["a.png", "test"]])
    with pytest.raises(RotauxError, match="lines 2 have a split other than train or val"):
        FileList(split, split_column="split").load()
    with pytest.raises(RotauxError, match="either a split column"):
        FileList(split, split_column="split", val_fraction=0.2).load()


def test_a_crop_larger_than_the_images_is_refused(tmp_path):
    _images(tmp_path, [f"{i}.png" for i in range(4)], side=20)
    listed = _csv(tmp_path / "l.csv", ["path"], [[f"{i}.png"] for i in range(4)])
    data = SSLDataModule(FileList(listed), image_size=32, batch_size=2, num_workers=0)
    with pytest.raises(RotauxError, match="Crop size 32 is larger than the FileList images"):
        data.setup("fit")


def test_labelled_list_trains_and_validates_through_the_data_module(tmp_path):
    _images(tmp_path, [f"{i}.png" for i in range(8)])
    rows = [[f"{i}.png", "ab"[i % 2], "val" if i >= 6 else "train"] for i in range(8)]
    listed = _csv(tmp_path / "l.csv", ["path", "label", "split"], rows)
    source = FileList(listed, label_column="label", split_column="split")
    data = SSLDataModule(source, image_size=32, batch_size=3, num_workers=0)
    data.setup("fit")
    assert data.evaluation_data == "train" and data.classes == ["a", "b"]
    batch = next(iter(data.val_dataloader()))
    assert batch["label"].tolist() == [0, 1] and batch["image"].shape == (2, 3, 32, 32)


def test_switching_a_recipe_to_a_file_list_does_not_inherit_its_root(capsys):
    recipe = Path(__file__).resolve().parents[2] / "configs" / "imagenet100" / "byol.yaml"
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(recipe), "--data.dataset", "FileList",
              "--data.dataset.path", "lists/labels.csv", "--print_config"])  # fmt: skip
    dataset = yaml.safe_load(capsys.readouterr().out)["data"]["dataset"]
    assert dataset["class_path"] == "rotaux.data.FileList"
    # the recipe's ImageFolder root would make every listed path wrong
    assert dataset["init_args"]["base_dir"] is None
    assert dataset["init_args"]["path"] == "lists/labels.csv"
