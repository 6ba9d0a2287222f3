"""Labelled images for offline evaluation: augmented training images for fine-tuning,
un-augmented ones for cached features, and the validation split."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from lightning import LightningDataModule
from torch.utils.data import DataLoader, Dataset, Subset

from rotaux.backbones import Backbone
from rotaux.data.datamodule import EvalDataset
from rotaux.data.sources import DataSource
from rotaux.data.transforms import eval_transform, view_transform
from rotaux.errors import RotauxError
from rotaux.eval.features import labeled_indices
from rotaux.eval.linear import LINEAR_EVAL_VIEW

TrainSelection = Callable[[Dataset, list[int]], list[int]]
"""Picks the training images a protocol uses: given the training split and the indices of its
labelled images, returns indices into the split (semi-supervised subsets)."""


class LabelledData(LightningDataModule):
    """The labelled training and validation images of a data source, for evaluation.

    Training batches (``train_dataloader``) are ``{"image", "label"}`` with the
    linear-evaluation augmentation :data:`~rotaux.eval.linear.LINEAR_EVAL_VIEW` (random resized
    crop and flip: the preprocessing of SimCLR's fine-tuning and of the usual linear protocol),
    reshuffled every epoch from ``seed``; validation images are resized and centre-cropped.
    Only labelled training images are used (STL-10's unlabeled ones are left out), and
    ``select`` may narrow them to a subset. Images are normalised on the device with the
    source's statistics.

    Args:
        source: where the images come from (a labelled :mod:`rotaux.data.sources` source).
        batch_size: images per step.
        num_workers: loader processes.
        image_size: crop side; ``None`` takes the source's.
        val_resize: shorter side before the centre crop; ``None`` is ``image_size``.
        select: picks the training images (``None``: every labelled one).
        seed: seed of the shuffling and augmentation.
    """

    def __init__(
        self,
        source: DataSource,
        batch_size: int = 256,
        num_workers: int = 4,
        image_size: int | None = None,
        val_resize: int | None = None,
        select: TrainSelection | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if batch_size < 1 or num_workers < 0:
            raise RotauxError(
                f"batch_size must be >= 1 and num_workers >= 0, got {batch_size} and {num_workers}."
            )
        self.source = source
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.image_size = image_size or source.image_size
        self.val_resize = val_resize or self.image_size
        self.select = select
        self.seed = seed
        self.mean = tuple(source.mean)
        self.std = tuple(source.std)
        self.classes: list[str] = []
        self.train_indices: list[int] = []
        self._splits: tuple[Dataset, Dataset] | None = None
        self._statistics: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def check_backbone(self, backbone: Backbone) -> None:
        """Refuse, before any image is read, images the backbone cannot take."""
        if backbone.in_channels != self.source.channels:
            raise RotauxError(
                f"The backbone takes {backbone.in_channels}-channel images but the "
                f"{type(self.source).__name__} images have {self.source.channels}; evaluate "
                "on data of the kind the backbone was pretrained on."
            )
        backbone.check_input_size(self.image_size)

    def prepare_data(self) -> None:
        self.source.prepare()

    def setup(self, stage: str | None = None) -> None:
        if self._splits is not None:
            return
        splits = self.source.load()
        name = type(self.source).__name__
        if not splits.classes:
            raise RotauxError(
                f"{name} has no labels; evaluation needs labelled images (CIFAR10, CIFAR100, "
                "STL10, ImageFolder, FileList with a label_column, ...)."
            )
        if len(splits.val) == 0:
            raise RotauxError(
                f"{name} has no validation images to measure accuracy on; give it a "
                "validation split (an ImageFolder holds out val_fraction without val/)."
            )
        labelled = labeled_indices(splits.train)
        if not labelled:
            raise RotauxError(f"{name}'s training split has no labelled images.")
        self.train_indices = self.select(splits.train, labelled) if self.select else labelled
        self.classes = list(splits.classes)
        self._splits = (splits.train, splits.val)

    def _datasets(self) -> tuple[Dataset, Dataset]:
        if self._splits is None:
            raise RuntimeError("Call LabelledData.setup() before asking for data.")
        return self._splits

    def train_dataset(self) -> Dataset:
        """The selected training images, augmented."""
        train, _ = self._datasets()
        augment = view_transform(LINEAR_EVAL_VIEW, self.image_size, self.source.is_rgb)
        return EvalDataset(Subset(train, self.train_indices), augment)

    def eval_train_dataset(self) -> Dataset:
        """The selected training images, resized and centre-cropped (for cached features)."""
        train, _ = self._datasets()
        return EvalDataset(Subset(train, self.train_indices), self._eval_transform())

    def val_dataset(self) -> Dataset:
        _, val = self._datasets()
        return EvalDataset(Subset(val, labeled_indices(val)), self._eval_transform())

    def _eval_transform(self) -> Any:
        return eval_transform(self.image_size, self.val_resize)

    def train_dataloader(self) -> DataLoader:
        dataset = self.train_dataset()
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=True,
            # a last batch of one image breaks BatchNorm's training statistics
            drop_last=len(dataset) % self.batch_size == 1,
            generator=torch.Generator().manual_seed(self.seed),
            **self._loader_settings(),
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_dataset(), batch_size=self.batch_size, **self._loader_settings())

    def _loader_settings(self) -> dict[str, Any]:
        return {
            "num_workers": self.num_workers,
            "pin_memory": torch.cuda.is_available(),
            "persistent_workers": self.num_workers > 0,
        }

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (0..255) or float ``(B, C, H, W)`` -> normalised float32 on the images' device
        (the pretraining data module's convention)."""
        scale = 255.0 if images.dtype == torch.uint8 else 1.0
        if images.device not in self._statistics:
            shape = (1, len(self.mean), 1, 1)
            self._statistics[images.device] = (
                torch.tensor(self.mean, device=images.device).view(shape),
                torch.tensor(self.std, device=images.device).view(shape),
            )
        mean, std = self._statistics[images.device]
        return (images.float() - mean * scale) / (std * scale)

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict:
        batch["image"] = self.normalize(batch["image"])
        return batch
