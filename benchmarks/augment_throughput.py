"""Augmentation throughput: the per-image pipeline of the loader workers against the batched one
that runs on the training device.

Both make BYOL's two views (``byol_views``: blur only at 96 pixels and up) plus the rotation
crop (the first view's augmentation, as ``SSLDataModule`` makes it for a model with
``rotation_source="crop"``, the default) from every source image, at two resolutions: 32x32
crops of 32x32 images (CIFAR) and 224x224 crops of 256x256 images (ImageNet after a fixed
resize). Inputs are random uint8 images of that size.

What is timed
    *per-image*: ``rotaux.data.transforms.view_transform`` called on one ``(3, H, W)`` uint8
    tensor at a time, three pipelines per image, as a ``DataLoader`` worker runs them (no
    collation, no worker processes). *batched*: ``BatchedViewAugmentation`` on ``(B, 3, H, W)``
    uint8 batches already on the device, three modules per batch, with a CUDA synchronise after
    each batch (the host-to-device copy is not timed). Images/s count source images, each giving
    three crops. One untimed warm-up image or batch comes first. On CPU the script runs with
    ``--threads`` intra-op threads (1 by default: the figure per core, comparable to one loader
    worker).

Full run (about a minute on one CPU core, nearly all of it the 224-pixel CPU rows, plus under half
a minute on a GPU if there is one)::

    python benchmarks/augment_throughput.py --images 256 --batch-size 64 --cuda-batch-size 256
"""

from __future__ import annotations

import argparse
import platform
import time
from dataclasses import dataclass

import torch

from rotaux.data.batched_augment import BatchedViewAugmentation
from rotaux.data.transforms import ViewAugmentation, byol_views, view_transform

RESOLUTIONS = {32: 32, 224: 256}
"""Crop side -> side of the square input images."""


@dataclass(frozen=True)
class Row:
    crop: int
    source: int
    pipeline: str
    device: str
    threads: int
    images: int
    seconds: float

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds


def views_for(crop: int) -> list[ViewAugmentation]:
    """The two BYOL views and the rotation crop, as ``SSLDataModule`` builds them."""
    views = byol_views(with_blur=crop >= 96)
    return [*views, views[0]]


def random_images(
    count: int, side: int, seed: int, device: torch.device | str = "cpu"
) -> torch.Tensor:
    generator = torch.Generator(device).manual_seed(seed)
    shape = (count, 3, side, side)
    return torch.randint(0, 256, shape, dtype=torch.uint8, device=device, generator=generator)


def time_per_image(crop: int, source: int, count: int, threads: int) -> Row:
    pipelines = [view_transform(view, crop) for view in views_for(crop)]
    images = random_images(count + 1, source, seed=0)
    for pipeline in pipelines:
        pipeline(images[0])
    started = time.perf_counter()
    for image in images[1:]:
        for pipeline in pipelines:
            pipeline(image)
    return Row(crop, source, "per-image", "cpu", threads, count, time.perf_counter() - started)


def time_batched(
    crop: int, source: int, count: int, batch_size: int, device: torch.device, threads: int
) -> Row:
    modules = [BatchedViewAugmentation(view, crop) for view in views_for(crop)]
    batches = max(1, count // batch_size)
    images = random_images(batch_size * (batches + 1), source, seed=1, device=device)
    chunks = images.split(batch_size)

    def augment(batch: torch.Tensor) -> None:
        for module in modules:
            module(batch)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    augment(chunks[0])
    started = time.perf_counter()
    for batch in chunks[1:]:
        augment(batch)
    seconds = time.perf_counter() - started
    label = "cpu" if device.type == "cpu" else torch.cuda.get_device_name(device)
    return Row(
        crop, source, f"batched (B={batch_size})", label, threads, batches * batch_size, seconds
    )


def markdown(rows: list[Row]) -> str:
    lines = [
        "# Augmentation throughput: 2 BYOL views + rotation crop per image",
        "",
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}. Images/s "
        "count source images (3 crops each); per-image = `view_transform` one image at a time "
        "(one loader worker), batched = `BatchedViewAugmentation` on uint8 batches already on "
        "the device.",
        "",
        "| crop | input | pipeline | device | threads | images | images/s |",
        "|--:|--:|---|---|--:|--:|--:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.crop} | {row.source} | {row.pipeline} | {row.device} | {row.threads} "
            f"| {row.images} | {row.images_per_s:.1f} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=256, help="timed source images per row")
    parser.add_argument("--batch-size", type=int, default=64, help="batch of the CPU rows")
    parser.add_argument("--cuda-batch-size", type=int, default=256, help="batch of the GPU rows")
    parser.add_argument("--cuda-images", type=int, default=4096, help="timed images, GPU rows")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads on CPU")
    parser.add_argument(
        "--crops", type=int, nargs="+", choices=sorted(RESOLUTIONS), default=[32, 224]
    )
    parser.add_argument("--no-cuda", action="store_true", help="skip the GPU rows")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available() and not args.no_cuda
    started = time.perf_counter()
    rows = []
    for crop in args.crops:
        source = RESOLUTIONS[crop]
        rows.append(time_per_image(crop, source, args.images, args.threads))
        cpu = torch.device("cpu")
        rows.append(time_batched(crop, source, args.images, args.batch_size, cpu, args.threads))
        if cuda:
            gpu = torch.device("cuda")
            batch = args.cuda_batch_size
            rows.append(time_batched(crop, source, args.cuda_images, batch, gpu, args.threads))
    print(markdown(rows))
    print(f"Benchmark time: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
