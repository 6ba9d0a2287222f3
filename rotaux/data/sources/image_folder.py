"""An image folder with one sub-folder per class (torchvision's ``ImageFolder`` layout)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset, Subset
from torchvision import datasets
from torchvision.datasets.folder import IMG_EXTENSIONS

from rotaux.data.sources.base import DataSource, SplitDatasets, stratified_split
from rotaux.data.sources.image_files import (
    CorruptImagePolicy,
    VerifyMode,
    load_rgb,
    shorter_sides,
    verify_image_files,
)
from rotaux.errors import RotauxError

IMAGEFOLDER_LAYOUT = (
    "--data.dataset.root must hold train/<class>/<image> and optionally val/<class>/<image> "
    "(without val/, a stratified val_fraction of train/ is held out)"
)


@dataclass(frozen=True)
class ImageFolder(DataSource):
    """Images in ``root/train/<class>/`` and optionally ``root/val/<class>/`` (ImageNet,
    ImageNet-100 and any labelled collection laid out so). Without ``val/`` a seeded, stratified
    ``val_fraction`` of every class is held out for validation. Every file is checked before
    training (``verify_images``).

    Args:
        root: the folder holding ``train/`` (and ``val/``).
        val_fraction: share of every class held out when there is no ``val/`` folder.
        split_seed: seed of that split.
        verify_images: ``full`` decodes every image before training, ``header`` parses headers
            only (fast on ImageNet-size folders, misses truncated files), ``none`` skips it.
        on_corrupt_image: ``error`` stops with the list of unreadable images; ``skip`` warns
            with that list and leaves them out.
    """

    root: str = "./data"
    val_fraction: float = 0.1
    split_seed: int = 0
    verify_images: VerifyMode = "full"
    on_corrupt_image: CorruptImagePolicy = "error"

    def load(self) -> SplitDatasets:
        root = Path(self.root)
        if not root.is_dir():
            raise RotauxError(
                f"Data root {self.root!r} does not exist or is not a folder. {IMAGEFOLDER_LAYOUT}."
            )
        train_dir, val_dir = root / "train", root / "val"
        if not train_dir.is_dir():
            raise RotauxError(
                f"Data root {self.root!r} has no train/ folder. {IMAGEFOLDER_LAYOUT}."
            )
        train = _checked_folder(train_dir)
        if val_dir.is_dir():
            val = _checked_folder(val_dir)
            if val.classes != train.classes:
                missing = sorted(set(train.classes) - set(val.classes))
                extra = sorted(set(val.classes) - set(train.classes))
                raise RotauxError(
                    f"The class folders of {val_dir} differ from those of {train_dir}: missing "
                    f"in val {missing}, only in val {extra}. Both must hold the same classes."
                )
            unreadable = verify_image_files(
                [path for path, _ in train.samples + val.samples],
                self.verify_images,
                self.on_corrupt_image,
            )
            _leave_out(train, unreadable)
            _leave_out(val, unreadable)
            return SplitDatasets(train, val, train.classes)
        paths = [path for path, _ in train.samples]
        _leave_out(train, verify_image_files(paths, self.verify_images, self.on_corrupt_image))
        train_indices, val_indices = stratified_split(
            train.targets, self.val_fraction, self.split_seed
        )
        return SplitDatasets(
            Subset(train, train_indices), Subset(train, val_indices), train.classes
        )

    def image_sides(self, train: Dataset) -> list[int]:
        folder = train.dataset if isinstance(train, Subset) else train
        return shorter_sides([path for path, _ in getattr(folder, "samples", [])])


def _checked_folder(folder: Path) -> datasets.ImageFolder:
    class_dirs = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())
    if not class_dirs:
        raise RotauxError(
            f"{folder} holds no class folders: images must be in {folder}/<class>/<image>. "
            f"{IMAGEFOLDER_LAYOUT}."
        )
    dataset = datasets.ImageFolder(str(folder), loader=load_rgb, allow_empty=True)
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


def _leave_out(folder: datasets.ImageFolder, paths: set[str]) -> None:
    """Remove the samples stored at ``paths`` from an image-folder dataset."""
    folder.samples = [sample for sample in folder.samples if sample[0] not in paths]
    folder.imgs = folder.samples
    folder.targets = [target for _, target in folder.samples]
