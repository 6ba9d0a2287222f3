"""A folder of images without labels, at any nesting depth."""

from __future__ import annotations

from dataclasses import dataclass

from torch.utils.data import Dataset, Subset
from torchvision.datasets.folder import IMG_EXTENSIONS

from rotaux.data.sources.base import DataSource, SplitDatasets, held_out_split
from rotaux.data.sources.file_samples import FileSamples, find_files, sample_paths
from rotaux.data.sources.image_files import (
    CorruptImagePolicy,
    VerifyMode,
    load_rgb,
    shorter_sides,
    verify_image_files,
)


@dataclass(frozen=True)
class UnlabeledFolder(DataSource):
    """Every image file under ``root``, in any sub-folder at any depth (folder names mean
    nothing), decoded to RGB, each with label -1. Pretraining needs no labels; the online
    probe, the kNN monitor and ``LinearEval`` take theirs from ``--data.eval_dataset`` (a
    labelled source) or are switched off with a warning.

    Args:
        root: the folder to search.
        val_fraction: share of the images held out as the validation split (seeded); 0 holds
            none out, so there is no validation split (unless ``--data.eval_dataset`` gives one).
        split_seed: seed of that hold-out.
        verify_images: ``full`` decodes every image before training, ``header`` parses headers
            only (fast, misses truncated files), ``none`` skips it.
        on_corrupt_image: ``error`` stops with the list of unreadable images; ``skip`` warns
            with that list and leaves them out.
    """

    root: str = "./data"
    val_fraction: float = 0.0
    split_seed: int = 0
    verify_images: VerifyMode = "full"
    on_corrupt_image: CorruptImagePolicy = "error"

    def load(self) -> SplitDatasets:
        paths = find_files(self.root, IMG_EXTENSIONS, "image files")
        unreadable = verify_image_files(paths, self.verify_images, self.on_corrupt_image)
        images = FileSamples(paths, [-1] * len(paths), load_rgb).without(unreadable)
        train_indices, val_indices = held_out_split(
            images.targets, self.val_fraction, self.split_seed
        )
        return SplitDatasets(Subset(images, train_indices), Subset(images, val_indices), [])

    def image_sides(self, train: Dataset) -> list[int]:
        return shorter_sides(sample_paths(train))
