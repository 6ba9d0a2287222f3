"""What every data source is: a typed description of where images come from, which loads the
training and validation splits.

A :class:`DataSource` is a frozen dataclass (``--data.dataset CIFAR10 --data.dataset.root
./data``); it owns its own options, and the data module asks it for datasets and for the
normalisation and crop size that suit its images. A source of your own is a subclass in your
own module, given as ``--data.dataset your_module.YourSource`` (README, "Your own data").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset

from rotaux.errors import RotauxError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class SplitDatasets:
    """Training and validation datasets returning ``(image, label)`` and the class names.

    Images are PIL images or uint8 tensors ``(C, H, W)``; a label below 0 means unlabeled."""

    train: Dataset
    val: Dataset
    classes: list[str]


class DataSource:
    """Base of the data sources. Subclasses are frozen dataclasses and implement :meth:`load`.

    The defaults below suit RGB images of varying size; a source overrides what it knows better
    (CIFAR's statistics and fixed 32 px side)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # a data module built in Python keeps its source in the checkpoint's hyperparameters
        torch.serialization.add_safe_globals([cls])

    @property
    def image_size(self) -> int:
        """The training crop side that suits these images (``--data.image_size`` overrides)."""
        return 224

    @property
    def mean(self) -> tuple[float, ...]:
        """Per-channel normalisation mean (``--data.mean`` overrides)."""
        return IMAGENET_MEAN

    @property
    def std(self) -> tuple[float, ...]:
        """Per-channel normalisation standard deviation (``--data.std`` overrides)."""
        return IMAGENET_STD

    @property
    def native_size(self) -> int | None:
        """The images' side where the source fixes it, else ``None``."""
        return None

    def prepare(self) -> None:
        """Download or otherwise fetch the data once, before any process loads it."""

    def load(self) -> SplitDatasets:
        """The training and validation splits, checked: a problem raises
        :class:`~rotaux.errors.RotauxError` naming the file or folder and the fix."""
        raise NotImplementedError(f"{type(self).__name__} must implement load().")

    def image_sides(self, train: Dataset) -> list[int]:
        """Shorter sides of a sample of the training images (for the crop-size check) when
        :attr:`native_size` is ``None``; empty when unknown."""
        return []


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
