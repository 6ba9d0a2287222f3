"""Loading the supported datasets, with errors that say what is wrong and how to fix it."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from lightning.pytorch.utilities import rank_zero_warn
from PIL import Image
from torch.utils.data import Dataset, Subset
from torchvision import datasets as tv_datasets
from torchvision.datasets.folder import IMG_EXTENSIONS

from rotaux.data.synthetic import SyntheticImages
from rotaux.errors import RotauxError

DatasetName = Literal["cifar10", "cifar100", "stl10", "imagefolder", "synthetic"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

IMAGEFOLDER_LAYOUT = (
    "--data.root must hold train/<class>/<image> and optionally val/<class>/<image> "
    "(without val/, a stratified val_fraction of train/ is held out)"
)


@dataclass(frozen=True)
class DatasetPreset:
    """Per-dataset defaults: training crop side, normalisation, and the images' fixed side
    (``None`` where images vary in size)."""

    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    native_size: int | None


PRESETS: dict[str, DatasetPreset] = {
    "cifar10": DatasetPreset(32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), 32),
    "cifar100": DatasetPreset(32, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), 32),
    "stl10": DatasetPreset(96, (0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713), 96),
    "imagefolder": DatasetPreset(224, IMAGENET_MEAN, IMAGENET_STD, None),
    "synthetic": DatasetPreset(32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), None),
}


class CorruptImageError(RotauxError):
    """An image file that cannot be decoded."""


def load_rgb(path: str) -> Image.Image:
    """Decode an image file to RGB, naming the file if it is corrupt or truncated."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise CorruptImageError(
            f"Cannot decode image {path}: {error}. Remove or replace the file."
        ) from error


@dataclass
class SplitDatasets:
    """Training and validation datasets returning ``(image, label)`` and the class names."""

    train: Dataset
    val: Dataset
    classes: list[str]


def load_datasets(
    name: DatasetName,
    root: str,
    download: bool,
    val_fraction: float,
    split_seed: int,
    verify_images: Literal["full", "header", "none"],
    synthetic_size: int,
    synthetic_classes: int,
    image_size: int,
    on_corrupt_image: Literal["error", "skip"] = "error",
) -> SplitDatasets:
    """Build the train/val datasets for ``name`` (validation = the official test split for the
    torchvision datasets)."""
    if name == "imagefolder":
        return _image_folder(root, val_fraction, split_seed, verify_images, on_corrupt_image)
    if name == "synthetic":
        train = SyntheticImages(synthetic_size, synthetic_classes, image_size, seed=split_seed)
        val_size = max(synthetic_classes, round(synthetic_size * val_fraction))
        val = SyntheticImages(val_size, synthetic_classes, image_size, seed=split_seed + 1)
        return SplitDatasets(train, val, train.classes)
    return _torchvision(name, root, download)


def download_torchvision(name: DatasetName, root: str) -> None:
    """Download a torchvision dataset into ``root`` (a no-op when it is already there)."""
    if name in ("cifar10", "cifar100", "stl10"):
        _torchvision(name, root, download=True)


def _torchvision(name: str, root: str, download: bool) -> SplitDatasets:
    try:
        if name == "stl10":
            # Pretraining uses the 100k unlabeled images too; their label is -1, which the
            # evaluation callbacks skip.
            train = tv_datasets.STL10(root, split="train+unlabeled", download=download)
            val = tv_datasets.STL10(root, split="test", download=download)
        else:
            dataset_class = tv_datasets.CIFAR10 if name == "cifar10" else tv_datasets.CIFAR100
            train = dataset_class(root, train=True, download=download)
            val = dataset_class(root, train=False, download=download)
    except (RuntimeError, OSError) as error:
        raise RotauxError(
            f"Could not load {name} from --data.root {root!r} ({error}). Either let torchvision "
            f"download it there (--data.download true, needs network access), copy torchvision's "
            f"{name} files into that folder, or point to an image folder with --data.dataset "
            f"imagefolder: {IMAGEFOLDER_LAYOUT}."
        ) from error
    return SplitDatasets(train, val, list(train.classes))


def _image_folder(
    root: str,
    val_fraction: float,
    split_seed: int,
    verify: Literal["full", "header", "none"],
    on_corrupt: Literal["error", "skip"],
) -> SplitDatasets:
    root_path = Path(root)
    if not root_path.is_dir():
        raise RotauxError(
            f"Data root {root!r} does not exist or is not a folder. {IMAGEFOLDER_LAYOUT}."
        )
    train_dir, val_dir = root_path / "train", root_path / "val"
    if not train_dir.is_dir():
        raise RotauxError(f"Data root {root!r} has no train/ folder. {IMAGEFOLDER_LAYOUT}.")
    train = _checked_folder(train_dir)
    if val_dir.is_dir():
        val = _checked_folder(val_dir)
        if val.classes != train.classes:
            missing = sorted(set(train.classes) - set(val.classes))
            extra = sorted(set(val.classes) - set(train.classes))
            raise RotauxError(
                f"The class folders of {val_dir} differ from those of {train_dir}: "
                f"missing in val {missing}, only in val {extra}. Both must hold the same classes."
            )
        unreadable = verify_image_files(
            [path for path, _ in train.samples + val.samples], verify, on_corrupt
        )
        _leave_out(train, unreadable)
        _leave_out(val, unreadable)
        return SplitDatasets(train, val, train.classes)
    _leave_out(train, verify_image_files([path for path, _ in train.samples], verify, on_corrupt))
    train_indices, val_indices = stratified_split(train.targets, val_fraction, split_seed)
    return SplitDatasets(Subset(train, train_indices), Subset(train, val_indices), train.classes)


def _checked_folder(folder: Path) -> tv_datasets.ImageFolder:
    class_dirs = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())
    if not class_dirs:
        raise RotauxError(
            f"{folder} holds no class folders: images must be in {folder}/<class>/<image>. "
            f"{IMAGEFOLDER_LAYOUT}."
        )
    dataset = tv_datasets.ImageFolder(str(folder), loader=load_rgb, allow_empty=True)
    counts = torch.bincount(
        torch.as_tensor(dataset.targets, dtype=torch.long), minlength=len(dataset.classes)
    )
    empty = [
        name for name, count in zip(dataset.classes, counts.tolist(), strict=True) if count == 0
    ]
    if empty:
        raise RotauxError(
            f"{folder} has class folders without images: {empty[:10]}"
            f"{' ...' if len(empty) > 10 else ''}. Accepted extensions: "
            f"{', '.join(IMG_EXTENSIONS)}. Remove the empty folders or add images."
        )
    return dataset


def stratified_split(
    targets: list[int], val_fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Seeded split holding out ``round(val_fraction * n)`` images of every class (at least one
    of every class with two or more images). Returns sorted train and val indices."""
    if not 0 < val_fraction < 1:
        raise RotauxError(f"val_fraction must be between 0 and 1, got {val_fraction}.")
    labels = torch.as_tensor(targets)
    generator = torch.Generator().manual_seed(seed)
    train_indices, val_indices = [], []
    for label in labels.unique(sorted=True):
        members = torch.nonzero(labels == label).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        held_out = round(val_fraction * len(members))
        if len(members) >= 2:
            held_out = min(max(held_out, 1), len(members) - 1)
        val_indices += members[:held_out].tolist()
        train_indices += members[held_out:].tolist()
    return sorted(train_indices), sorted(val_indices)


def verify_image_files(
    paths: list[str],
    mode: Literal["full", "header", "none"],
    on_corrupt: Literal["error", "skip"] = "error",
) -> set[str]:
    """Check image files before training: ``full`` decodes every image, ``header`` only parses
    headers (fast, misses truncated files), ``none`` skips the check. With ``on_corrupt="error"``
    all problems are listed in one error; with ``"skip"`` they are listed in a warning and the
    unreadable paths are returned for the caller to leave out."""
    if mode == "none":
        return set()

    def problem(path: str) -> str | None:
        try:
            if mode == "full":
                load_rgb(path)
            else:
                with Image.open(path) as image:
                    image.verify()
        except (CorruptImageError, OSError, SyntaxError, ValueError) as error:
            return f"{path}: {error}"
        return None

    # file reads dominate on network and cold disks, so use more threads than cores
    with ThreadPoolExecutor(max_workers=4 * (os.cpu_count() or 1)) as pool:
        problems = [p for p in pool.map(problem, paths, chunksize=256) if p is not None]
    if not problems:
        return set()
    listed = "\n  ".join(problems[:20])
    more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
    summary = f"{len(problems)} of {len(paths)} image files cannot be read:\n  {listed}{more}\n"
    if on_corrupt == "error":
        raise CorruptImageError(
            summary + "Remove or replace them, or leave them out with --data.on_corrupt_image "
            "skip (--data.verify_images none skips this check)."
        )
    rank_zero_warn(summary + "They are left out of training and validation.")
    return {problem.split(": ", 1)[0] for problem in problems}


def _leave_out(folder: tv_datasets.ImageFolder, paths: set[str]) -> None:
    """Remove the samples stored at ``paths`` from an image-folder dataset."""
    folder.samples = [sample for sample in folder.samples if sample[0] not in paths]
    folder.imgs = folder.samples
    folder.targets = [target for _, target in folder.samples]


def image_sides(dataset: Dataset, count: int = 16) -> list[int]:
    """Shorter side of up to ``count`` images of an image-folder dataset, read from headers."""
    folder = dataset.dataset if isinstance(dataset, Subset) else dataset
    samples = getattr(folder, "samples", None)
    if not samples:
        return []
    step = max(1, len(samples) // count)
    sides = []
    for path, _ in samples[::step][:count]:
        with Image.open(path) as image:
            sides.append(min(image.size))
    return sides
