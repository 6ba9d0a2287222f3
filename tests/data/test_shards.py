"""Shards: `rotaux shards` conversion, the Shards source's checks, and training from shards on
one process, on 2-process gloo DDP and across a mid-epoch resume."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_utils import TINY_BACKBONE, read_metrics
from lightning import Callback, Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from PIL import Image
from sample_ids import RecordSampleIds, ids_by_epoch, read_sample_ids

from rotaux.backbones import ResNet
from rotaux.checkpointing import AtomicCheckpointIO, PreemptionCheckpoint
from rotaux.cli import main as rotaux_main
from rotaux.data import ImageFolder, Shards, SSLDataModule
from rotaux.data.shards_convert import main as shards_main
from rotaux.data.sources.image_files import CorruptImageError
from rotaux.data.sources.shards import INDEX_FILE, ShardDataset
from rotaux.errors import RotauxError
from rotaux.loggers import RotauxLogger
from rotaux.methods import BYOL

TESTS = Path(__file__).resolve().parents[1]
TRAIN_PER_CLASS, VAL_PER_CLASS = 16, 4


def make_image_folder(root: Path, train=TRAIN_PER_CLASS, val=VAL_PER_CLASS) -> Path:
    """``root/{train,val}/{class_0,class_1}/*.jpg``: noise JPEGs of varied sizes (40-47 px),
    the classes told apart by their mean colour."""
    generator = np.random.default_rng(0)
    for split, count in (("train", train), ("val", val)):
        for label in range(2):
            folder = root / split / f"class_{label}"
            folder.mkdir(parents=True)
            for index in range(count):
                shape = (40 + index % 8, 47 - index % 5, 3)
                pixels = generator.integers(0, 128, shape) + 100 * label
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{index}.jpg", quality=90)
    return root


def convert(folder: Path, out: Path, *extra: str) -> None:
    # small chunks, so that every split spans several shard files
    assert (
        shards_main(["--input", str(folder), "--out", str(out), "--shard-size", "8KB", *extra]) == 0
    )


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shards")
    convert(make_image_folder(root / "images"), root / "shards")
    return root / "shards"


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image)


def test_conversion_round_trip_keeps_every_image_label_and_file(shards):
    original = ImageFolder(str(shards.parent / "images")).load()
    stored = Shards(str(shards)).load()
    assert stored.classes == original.classes == ["class_0", "class_1"]
    for name in ("train", "val"):
        files, split = getattr(original, name), getattr(stored, name)
        assert len(split) == len(files) == {"train": 32, "val": 8}[name]
        assert len(split.chunk_files) > 1
        for index, (path, label) in enumerate(files.samples):
            image, stored_label = split[index]
            assert stored_label == label
            assert np.array_equal(pixels(image), pixels(files[index][0]))
            data, _, file_name = split.encoded(index)
            assert data.numpy().tobytes() == Path(path).read_bytes()
            assert file_name == os.path.relpath(path, shards.parent / "images")


def test_file_list_conversion_keeps_labels_and_holds_out_a_stratified_split(tmp_path):
    folder = make_image_folder(tmp_path / "images", train=8, val=0)
    listed = sorted(folder.glob("train/*/*.jpg"))
    with open(tmp_path / "images.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["path", "kind"])
        for path in listed:
            writer.writerow(
                [path.relative_to(tmp_path), "red" if "class_1" in path.parent.name else "blue"]
            )
    csv_args = ["--label-column", "kind", "--val-fraction", "0.25"]
    convert(tmp_path / "images.csv", tmp_path / "shards", *csv_args)
    stored = Shards(str(tmp_path / "shards")).load()
    assert stored.classes == ["blue", "red"]
    assert (len(stored.train), len(stored.val)) == (12, 4)
    seen = {}
    for split in (stored.train, stored.val):
        for index in range(len(split)):
            _, label, name = split.encoded(index)
            seen[name] = label
    # every listed file exactly once, with its row's label; 2 of each class held out
    assert seen == {str(p.relative_to(tmp_path)): int("class_1" in str(p)) for p in listed}
    assert sorted(stored.val[i][1] for i in range(4)) == [0, 0, 1, 1]


def test_file_list_without_validation_makes_train_shards_only(tmp_path):
    folder = make_image_folder(tmp_path / "images", train=2, val=0)
    (tmp_path / "list.txt").write_text(
        "\n".join(str(p) for p in sorted(folder.glob("train/*/*.jpg")))
    )
    convert(tmp_path / "list.txt", tmp_path / "shards")
    stored = Shards(str(tmp_path / "shards")).load()
    assert not (tmp_path / "shards" / "val").exists()
    assert (len(stored.train), len(stored.val), stored.classes) == (4, 0, [])
    assert {stored.train[i][1] for i in range(4)} == {-1}


def failed_conversion(capsys, *args: str) -> str:
    assert shards_main(list(args)) == 2
    return capsys.readouterr().err


def test_conversion_refuses_missing_and_empty_inputs(tmp_path, capsys):
    out = str(tmp_path / "out")
    assert "does not exist" in failed_conversion(
        capsys, "--input", str(tmp_path / "x"), "--out", out
    )
    (tmp_path / "empty" / "train").mkdir(parents=True)
    error = failed_conversion(capsys, "--input", str(tmp_path / "empty"), "--out", out)
    assert "holds no class folders" in error
    (tmp_path / "empty.csv").write_text("path,label\n")
    error = failed_conversion(capsys, "--input", str(tmp_path / "empty.csv"), "--out", out)
    assert "lists no images" in error
    assert not Path(out).exists()


def test_conversion_names_unreadable_images_and_refuses_to_overwrite(tmp_path, capsys):
    folder = make_image_folder(tmp_path / "images", train=2, val=1)
    broken = folder / "train" / "class_1" / "1.jpg"
    broken.write_bytes(broken.read_bytes()[:100])
    error = failed_conversion(capsys, "--input", str(folder), "--out", str(tmp_path / "out"))
    assert str(broken) in error and "cannot be read" in error
    broken.unlink()
    convert(folder, tmp_path / "out")
    error = failed_conversion(capsys, "--input", str(folder), "--out", str(tmp_path / "out"))
    assert "--overwrite" in error
    convert(folder, tmp_path / "out", "--overwrite")


def copied(shards: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(shards, tmp_path / "copy"))


def test_shards_refuse_a_missing_path(tmp_path):
    with pytest.raises(RotauxError, match="does not exist.*rotaux shards --out"):
        Shards(str(tmp_path / "nowhere")).load()
    (tmp_path / "not_shards" / "train").mkdir(parents=True)
    with pytest.raises(RotauxError, match="holds no index.json"):
        Shards(str(tmp_path / "not_shards")).load()


@pytest.mark.parametrize("damage", ["truncate", "remove"])
def test_shards_name_a_truncated_or_missing_shard_file(shards, tmp_path, damage):
    root = copied(shards, tmp_path)
    chunk = root / "train" / ShardDataset(str(root / "train")).chunk_files[1]
    if damage == "truncate":
        chunk.write_bytes(chunk.read_bytes()[:50])
    else:
        chunk.unlink()
    with pytest.raises(RotauxError, match="do not match its index.json") as error:
        Shards(str(root)).load()
    assert str(chunk) in str(error.value) and "rotaux shards" in str(error.value)


def test_shards_refuse_an_index_that_does_not_match(shards, tmp_path):
    root = copied(shards, tmp_path)
    index_path = root / "train" / INDEX_FILE
    index = json.loads(index_path.read_text())
    index["rotaux"]["samples"] += 1
    index_path.write_text(json.dumps(index))
    with pytest.raises(RotauxError, match="index does not match"):
        Shards(str(root)).load()
    del index["rotaux"]
    index_path.write_text(json.dumps(index))
    with pytest.raises(RotauxError, match="not the index of rotaux shards"):
        Shards(str(root)).load()


def test_shards_refuse_splits_of_different_conversions(shards, tmp_path):
    root = copied(shards, tmp_path)
    index_path = root / "val" / INDEX_FILE
    index = json.loads(index_path.read_text())
    index["rotaux"]["classes"] = ["cat", "dog"]
    index_path.write_text(json.dumps(index))
    with pytest.raises(RotauxError, match="splits disagree"):
        Shards(str(root)).load()


def test_a_shard_lost_after_the_check_is_named_when_read(shards, tmp_path):
    root = copied(shards, tmp_path)
    train = Shards(str(root)).load().train
    chunk = train.chunk_file(len(train) - 1)
    os.remove(chunk)
    with pytest.raises(RotauxError, match="missing, truncated or unreachable") as error:
        train[len(train) - 1]
    assert chunk in str(error.value)


def test_an_undecodable_image_in_the_shards_is_named(tmp_path):
    folder = make_image_folder(tmp_path / "images", train=2, val=1)
    broken = folder / "train" / "class_0" / "1.jpg"
    broken.write_bytes(b"not an image at all")
    convert(folder, tmp_path / "shards", "--verify", "none")
    train = Shards(str(tmp_path / "shards")).load().train
    with pytest.raises(CorruptImageError, match="train/class_0/1.jpg") as error:
        train[1]
    assert train.chunk_file(1) in str(error.value)


def shards_fit_args(shards: Path, run_dir: Path, ids_dir: Path, epochs: int) -> list[str]:
    """A tiny BYOL run on the shards: 32 training images, batches of 8."""
    return [
        "fit", "--model", "BYOL", *TINY_BACKBONE,
        "--model.proj_hidden_dim", "64", "--model.pred_hidden_dim", "64",
        "--data.dataset", "Shards", "--data.dataset.path", str(shards),
        "--data.image_size", "32", "--data.batch_size", "8", "--data.num_workers", "0",
        "--trainer.accelerator", "cpu", "--trainer.max_epochs", str(epochs),
        "--trainer.limit_val_batches", "1", "--trainer.num_sanity_val_steps", "0",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.log_every_n_steps", "1",
        "--trainer.logger.init_args.save_dir", str(run_dir),
        "--trainer.logger.init_args.name", "shards",
        "--trainer.callbacks+=sample_ids.RecordSampleIds",
        f"--trainer.callbacks.out_dir={ids_dir}",
    ]  # fmt: skip


def test_rotaux_fit_trains_on_shards_with_every_sample_once_per_epoch(shards, tmp_path):
    rotaux_main(shards_fit_args(shards, tmp_path, tmp_path / "ids", epochs=2))
    rows = read_metrics(tmp_path / "shards" / "version_0")
    assert {"train/loss", "val/linear_top1"} <= set().union(*rows)
    epochs = ids_by_epoch(read_sample_ids(tmp_path / "ids"))
    assert sorted(epochs) == [0, 1]
    assert all(sorted(ids) == list(range(32)) for ids in epochs.values())
    assert epochs[0] != epochs[1]


def test_rotaux_fit_on_shards_with_ddp_splits_every_epoch_between_the_ranks(shards, tmp_path):
    command = [
        sys.executable,
        "-m",
        "rotaux.cli",
        *shards_fit_args(shards, tmp_path, tmp_path / "ids", epochs=2),
    ]
    command += ["--trainer.devices", "2", "--trainer.strategy", "ddp"]
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=environment)
    assert result.returncode == 0, result.stdout + result.stderr
    ranks = [ids_by_epoch(read_sample_ids(tmp_path / "ids", rank)) for rank in (0, 1)]
    for epoch in (0, 1):
        first, second = ranks[0][epoch], ranks[1][epoch]
        # 32 images, 8 per step on each of 2 ranks: 2 steps per rank, no padding, no drops
        assert len(first) == len(second) == 16
        assert not set(first) & set(second)
        assert sorted(first + second) == list(range(32))
    assert ranks[0][0] != ranks[0][1]


class SigtermAt(Callback):
    """Sends this process SIGTERM during training batch ``batch`` of epoch ``epoch``."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if (trainer.current_epoch, batch_idx) == (self.epoch, self.batch):
            os.kill(os.getpid(), signal.SIGTERM)


def fit_on_shards(
    shards: Path,
    run_dir: Path,
    num_workers: int = 0,
    ckpt_path: Path | None = None,
    extra_callbacks: tuple[Callback, ...] = (),
) -> None:
    """BYOL + rotation on the 32 training images of the shards in batches of 8, 2 epochs, as
    `rotaux fit` configures checkpoints and pre-emption; records the sample ids of every step
    in ``run_dir/../ids``."""
    seed_everything(0, workers=True)
    model = BYOL(
        backbone=ResNet(width=8, cifar_stem=True),
        proj_hidden_dim=64,
        proj_output_dim=32,
        pred_hidden_dim=64,
        rotation_hidden_dim=32,
    )
    data = SSLDataModule(Shards(str(shards)), batch_size=8, num_workers=num_workers, image_size=32)
    trainer = Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=2,
        deterministic=True,
        logger=RotauxLogger(save_dir=run_dir, name="", version=""),
        callbacks=[
            ModelCheckpoint(filename="last", enable_version_counter=False),
            PreemptionCheckpoint(),
            RecordSampleIds(str(run_dir.parent / "ids")),
            *extra_callbacks,
        ],
        plugins=[AtomicCheckpointIO()],
        log_every_n_steps=1,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, data, ckpt_path=ckpt_path, weights_only=False)


def step_losses(run_dir: Path) -> list[tuple[int, float]]:
    return [
        (row["step"], row["train/loss"]) for row in read_metrics(run_dir) if "train/loss" in row
    ]


def test_a_mid_epoch_resume_on_shards_continues_without_repeats_or_gaps(shards, tmp_path):
    fit_on_shards(shards, tmp_path / "reference" / "run")
    reference = read_sample_ids(tmp_path / "reference" / "ids")
    with pytest.raises(SystemExit):
        fit_on_shards(
            shards,
            tmp_path / "resumed" / "first",
            num_workers=1,
            extra_callbacks=(SigtermAt(1, 1),),
        )
    checkpoint = tmp_path / "resumed" / "first" / "checkpoints" / "last.ckpt"
    fit_on_shards(shards, tmp_path / "resumed" / "second", num_workers=1, ckpt_path=checkpoint)
    resumed = read_sample_ids(tmp_path / "resumed" / "ids")
    # 4 steps of epoch 0, 2 of epoch 1 (the signal's batch finishes), then the last 2 of epoch 1
    assert [(row["epoch"], row["batch"]) for row in resumed] == [
        (0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1), (1, 2), (1, 3)
    ]  # fmt: skip
    assert resumed == reference
    assert sorted(ids_by_epoch(resumed)[1]) == list(range(32))
    # the same views of the same samples, so the same losses step by step
    losses = step_losses(tmp_path / "resumed" / "first") + step_losses(
        tmp_path / "resumed" / "second"
    )
    assert losses == step_losses(tmp_path / "reference" / "run")


def test_shards_read_through_litdata_s_object_storage_path(shards, tmp_path):
    # litdata's local: scheme goes through the object-storage code (the index fetched into the
    # cache, each sample read by its byte range) without object storage
    remote = Shards(f"local:{shards}", cache_dir=str(tmp_path / "cache")).load()
    local = Shards(str(shards)).load()
    assert remote.classes == local.classes
    assert (len(remote.train), len(remote.val)) == (len(local.train), len(local.val))
    for index in (0, 13, len(local.train) - 1):
        image, label = remote.train[index]
        assert label == local.train[index][1]
        assert np.array_equal(pixels(image), pixels(local.train[index][0]))
    with pytest.raises(RotauxError, match="Cannot read the shards index local:.*credentials"):
        Shards(f"local:{tmp_path / 'nowhere'}", cache_dir=str(tmp_path / "cache")).load()
