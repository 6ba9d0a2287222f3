"""Decoding JPEGs on the training device (--data.decode_on device), checked on the CPU against
decoding in the loader."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from cli_utils import TINY_BACKBONE, read_metrics
from PIL import Image

from rotaux.cli import main as rotaux_main
from rotaux.data import ImageFolder, Shards, SSLDataModule, Synthetic
from rotaux.data.device_decode import (
    EncodedSamples,
    collate_encoded,
    decode_to_squares,
    jpeg_components,
)
from rotaux.data.shards_convert import main as shards_main
from rotaux.data.sources.image_files import load_rgb
from rotaux.data.transforms import eval_transform
from rotaux.errors import RotauxError

SIZES = [(40, 52), (52, 40), (40, 52), (47, 61), (44, 44), (61, 47)]
"""(height, width) of the training images: landscape, portrait, square, repeated sizes."""


def jpeg_bytes(mode: str, height: int = 30, width: int = 41, seed: int = 0) -> bytes:
    generator = np.random.default_rng(seed)
    channels = {"RGB": 3, "L": 1, "CMYK": 4}[mode]
    pixels = generator.integers(0, 256, (height, width, channels), dtype=np.uint8)
    image = Image.frombytes(mode, (width, height), pixels.tobytes())
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def image_folder(root, sizes=SIZES, extension="jpg"):
    """Two classes, one image of every size in each, noise with an EXIF block (which puts the
    frame header further into the file)."""
    generator = np.random.default_rng(1)
    for label in range(2):
        folder = root / "train" / f"class_{label}"
        folder.mkdir(parents=True)
        for index, (height, width) in enumerate(sizes):
            pixels = generator.integers(0, 256, (height, width, 3), dtype=np.uint8)
            image = Image.fromarray(pixels)
            exif = Image.Exif()
            exif[0x010E] = "x" * 2000  # ImageDescription
            image.save(folder / f"{index}.{extension}", exif=exif.tobytes())
    return root


def test_jpeg_components_reads_the_frame_header():
    assert jpeg_components(jpeg_bytes("RGB")) == 3
    assert jpeg_components(jpeg_bytes("L")) == 1
    assert jpeg_components(jpeg_bytes("CMYK")) == 4
    png = io.BytesIO()
    Image.new("RGB", (4, 4)).save(png, "PNG")
    assert jpeg_components(png.getvalue()) is None


def test_decoding_on_the_device_equals_decoding_in_the_loader_on_cpu(tmp_path):
    paths = []
    for index, (mode, (height, width)) in enumerate(
        [("RGB", (40, 52)), ("RGB", (52, 40)), ("L", (45, 45)), ("RGB", (40, 52))]
    ):
        path = tmp_path / f"{index}.jpg"
        path.write_bytes(jpeg_bytes(mode, height, width, seed=index))
        paths.append(path)
    encoded = [torch.frombuffer(bytearray(p.read_bytes()), dtype=torch.uint8) for p in paths]
    squares = decode_to_squares(encoded, 32, torch.device("cpu"))
    in_loader = torch.stack([eval_transform(32, 32)(load_rgb(str(p))) for p in paths])
    assert squares.dtype == torch.uint8 and squares.shape == (4, 3, 32, 32)
    # libjpeg-turbo in torchvision and in Pillow decode alike, and the resize is the same
    assert torch.equal(squares, in_loader)


def data_module(root, decode_on, **options):
    source = ImageFolder(str(root), val_fraction=0.25)
    return SSLDataModule(
        source,
        batch_size=8,
        num_workers=options.pop("num_workers", 0),
        image_size=24,
        val_resize=32,
        augment_on="device",
        decode_on=decode_on,
        **options,
    )


@pytest.mark.parametrize("num_workers", [0, 1])
def test_a_device_decoded_batch_equals_the_loader_decoded_one(tmp_path, num_workers):
    root = image_folder(tmp_path / "images")
    batches = {}
    for decode_on in ("loader", "device"):
        data = data_module(root, decode_on, num_workers=num_workers)
        data.setup("fit")
        batch = next(iter(data.train_dataloader()))
        batches[decode_on] = data.on_before_batch_transfer(batch, 0)
    loader, device = batches["loader"], batches["device"]
    assert torch.equal(loader["index"], device["index"])
    assert torch.equal(loader["label"], device["label"])
    assert device["views"][0].shape == (8, 3, 32, 32)
    assert torch.equal(loader["views"][0], device["views"][0])


def test_files_that_are_not_plain_jpegs_are_decoded_in_the_loader(tmp_path):
    root = image_folder(tmp_path / "images")
    (root / "train" / "class_0" / "cmyk.jpg").write_bytes(jpeg_bytes("CMYK", 50, 38))
    Image.new("RGB", (39, 50), (10, 200, 30)).save(root / "train" / "class_1" / "odd.jpg", "PNG")
    # every image of the folder, the validation hold-out included
    train = ImageFolder(str(root)).load().train.dataset
    samples = EncodedSamples(train, 32, "ImageFolder")
    batch = collate_encoded([samples[index] for index in range(len(samples))])
    assert [data.dim() for data in batch["encoded"]].count(3) == 2
    squares = decode_to_squares(batch["encoded"], 32, torch.device("cpu"))
    in_loader = torch.stack([eval_transform(32, 32)(train[i][0]) for i in range(len(train))])
    assert torch.equal(squares, in_loader)
    assert batch["index"].tolist() == list(range(len(samples)))


def test_shards_decode_on_the_device_like_the_files_they_hold(tmp_path):
    root = image_folder(tmp_path / "images")
    shards_main(["--input", str(root), "--out", str(tmp_path / "shards"), "--val-fraction", "0.25"])
    train = Shards(str(tmp_path / "shards")).load().train
    samples = EncodedSamples(train, 32, "Shards")
    batch = collate_encoded([samples[index] for index in range(len(samples))])
    squares = decode_to_squares(batch["encoded"], 32, torch.device("cpu"))
    in_loader = torch.stack([eval_transform(32, 32)(train[i][0]) for i in range(len(train))])
    assert torch.equal(squares, in_loader)


def test_decoding_on_the_device_needs_device_augmentation():
    with pytest.raises(RotauxError, match="augment_on device"):
        SSLDataModule(Synthetic(), augment_on="loader", decode_on="device")


def test_decoding_on_the_device_refuses_sources_without_jpeg_files(tmp_path):
    data = SSLDataModule(Synthetic(size=32), batch_size=8, augment_on="device", decode_on="device")
    with pytest.raises(RotauxError, match="Synthetic gives decoded images"):
        data.setup("fit")
    root = image_folder(tmp_path / "images", extension="png")
    with pytest.raises(
        RotauxError, match=r"8 of 8 ImageFolder images checked are no JPEG \(.*/class_0/0\.png"
    ):
        data_module(root, "device").setup("fit")


def test_rotaux_fit_trains_with_jpegs_decoded_on_the_device(tmp_path):
    root = image_folder(tmp_path / "images", sizes=SIZES * 3)
    rotaux_main(
        [
            "fit", "--model", "BYOL", *TINY_BACKBONE,
            "--model.proj_hidden_dim", "64", "--model.pred_hidden_dim", "64",
            "--data.dataset", "ImageFolder", "--data.dataset.root", str(root),
            "--data.dataset.val_fraction", "0.25",
            "--data.augment_on", "device", "--data.decode_on", "device",
            "--data.image_size", "32", "--data.val_resize", "36",
            "--data.batch_size", "8", "--data.num_workers", "0",
            "--trainer.accelerator", "cpu", "--trainer.max_epochs", "1",
            "--trainer.limit_val_batches", "1", "--trainer.num_sanity_val_steps", "0",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--trainer.log_every_n_steps", "1",
            "--trainer.logger.init_args.save_dir", str(tmp_path),
            "--trainer.logger.init_args.name", "decode",
        ]
    )  # fmt: skip
    rows = read_metrics(tmp_path / "decode" / "version_0")
    losses = [row["train/loss"] for row in rows if "train/loss" in row]
    # 28 training images in batches of 8: 3 steps
    assert len(losses) == 3 and all(np.isfinite(losses))
    assert any("val/linear_top1" in row for row in rows)
