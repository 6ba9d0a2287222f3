"""Data throughput: decoded and augmented training images per second along each input path of
``SSLDataModule``.

Every path makes what a BYOL + rotation step needs from each image: the two BYOL views at
``--image-size`` (blur from 96 pixels up) and the rotation crop, as uint8 -> normalised float on
the training device. The images are JPEGs generated for the run, ImageNet-like in size (sides
between 333 and 500 pixels, smooth content plus a little noise, quality 90, about 45-60 kB), in
an image folder and in shards made from it with ``rotaux shards``.

Paths (``decode`` / ``augment``)
    *loader / loader*: Pillow decodes and torchvision augments per image in the loader.
    *loader / device*: Pillow decodes and resizes to ``--resize`` square in the loader, the
    views are cut and augmented batched on the device (``--data.augment_on device``).
    *device / device*: the loader only reads the files' bytes, the batch is decoded with
    ``torchvision.io.decode_jpeg`` on the device and resized there, then augmented
    (``--data.decode_on device``).
    Each runs on the image folder and on the shards.

What is timed
    ``next(loader)`` plus the data module's batch hooks (decoding on the device, the move to
    the device, the batched augmentations, normalisation and the rotated copies), with a CUDA
    synchronise after each batch; one untimed warm-up batch first (it starts the workers). The
    device is CUDA when there is one (``--device``), else the CPU. With ``--workers 0`` (the
    default) everything runs in one process: the CPU figures are per core. Loader work is on
    the CPU; on a GPU machine raise ``--workers`` to see when the device side limits.

Smoke run (seconds)::

    python benchmarks/data_throughput.py --images 32 --batch-size 8 --image-size 64 --resize 72

Full run (a few minutes on one CPU core; add --workers N on a GPU machine)::

    python benchmarks/data_throughput.py --images 512 --batch-size 64
"""

from __future__ import annotations

import argparse
import logging
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from lightning import Trainer
from lightning.fabric.utilities.apply_func import move_data_to_device
from PIL import Image

from rotaux.data import DataSource, ImageFolder, RotationInput, Shards, SSLDataModule
from rotaux.data.shards_convert import convert, input_source

SIDES = [(500, 375), (375, 500), (500, 333), (333, 500), (400, 400), (500, 400)]
"""(width, height) of the generated images: ImageNet's common shapes."""

PATHS = [("loader", "loader"), ("loader", "device"), ("device", "device")]
"""(decode, augment) of each row."""


@dataclass(frozen=True)
class Row:
    source: str
    decode: str
    augment: str
    device: str
    workers: int
    images: int
    seconds: float

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds


def make_images(root: Path, count: int, seed: int = 0) -> Path:
    """``root/train/class_<k>/<i>.jpg``, 4 classes: upsampled low-resolution noise (smooth, so
    it compresses like a photograph) plus a little pixel noise."""
    generator = np.random.default_rng(seed)
    for index in range(count):
        width, height = SIDES[index % len(SIDES)]
        coarse = generator.integers(0, 256, (height // 16, width // 16, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((width, height), Image.BICUBIC)
        noisy = np.asarray(image, dtype=np.int16) + generator.integers(-8, 9, (height, width, 3))
        folder = root / "train" / f"class_{index % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(
            folder / f"{index}.jpg", quality=90
        )
    return root


def measure(
    source: DataSource,
    label: str,
    decode: str,
    augment: str,
    args: argparse.Namespace,
    device: torch.device,
) -> Row:
    data = SSLDataModule(
        source,
        batch_size=args.batch_size,
        num_workers=args.workers,
        image_size=args.image_size,
        val_resize=args.resize,
        augment_on=augment,
        decode_on=decode,
    )
    # a trainer only to tell the data module its device; the rotation input of BYOL + rotation
    data.trainer = Trainer(
        accelerator=device.type, devices=1, logger=False, enable_progress_bar=False
    )
    data.rotation = RotationInput()
    data.setup("fit")
    loader = data.train_dataloader()
    batches = iter(loader)

    def step() -> None:
        batch = data.on_before_batch_transfer(next(batches), 0)
        data.on_after_batch_transfer(move_data_to_device(batch, device), 0)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    step()
    count = len(loader) - 1
    started = time.perf_counter()
    for _ in range(count):
        step()
    seconds = time.perf_counter() - started
    name = "cpu" if device.type == "cpu" else torch.cuda.get_device_name(device)
    return Row(label, decode, augment, name, args.workers, count * args.batch_size, seconds)


def markdown(rows: list[Row], args: argparse.Namespace) -> str:
    lines = [
        "# Data throughput: decode + 2 BYOL views + rotation crop per image",
        "",
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{args.threads} intra-op thread(s). JPEGs of 333-500 px sides; {args.image_size} px "
        f"crops, device paths from a {args.resize} px square; batches of {args.batch_size}.",
        "",
        "| source | decode | augment | device | workers | images | images/s |",
        "|---|---|---|---|--:|--:|--:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.source} | {row.decode} | {row.augment} | {row.device} | {row.workers} "
            f"| {row.images} | {row.images_per_s:.1f} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=512, help="images generated and read")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=0, help="loader worker processes")
    parser.add_argument("--image-size", type=int, default=224, help="crop side")
    parser.add_argument("--resize", type=int, default=256, help="square side, device paths")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="training device (default: cuda when present)",
    )
    args = parser.parse_args(argv)
    if args.images < 3 * args.batch_size:
        parser.error("--images must hold at least three batches (one is the warm-up)")
    return args


def main(argv: list[str] | None = None) -> list[Row]:
    args = parse_args(argv)
    # the trainers made only for their device would each print their accelerator summary
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="rotaux-data-throughput-") as work:
        folder = make_images(Path(work) / "images", args.images)
        convert(
            input_source(str(folder), val_fraction=0.1),
            str(Path(work) / "shards"),
            str(folder),
            progress=False,
        )
        sources = {
            "image folder": ImageFolder(str(folder), verify_images="none"),
            "shards": Shards(str(Path(work) / "shards")),
        }
        for label, source in sources.items():
            for decode, augment in PATHS:
                rows.append(measure(source, label, decode, augment, args, device))
    print(markdown(rows, args))
    print(f"Benchmark time: {time.perf_counter() - started:.0f} s")
    return rows


if __name__ == "__main__":
    main()
