"""Data: the shared data module, data sources, augmentations and rotation copies."""

from rotaux.data.datamodule import SSLDataModule
from rotaux.data.rotation import NUM_ROTATIONS, RotationInput, rotate_batch
from rotaux.data.sources import (
    CIFAR10,
    CIFAR100,
    DATA_SOURCES,
    STL10,
    ArrayFolder,
    DataSource,
    FileList,
    ImageFolder,
    Shards,
    Synthetic,
    SyntheticImages,
    UnlabeledFolder,
)
from rotaux.data.transforms import ViewAugmentation, byol_views

__all__ = [
    "CIFAR10",
    "CIFAR100",
    "DATA_SOURCES",
    "NUM_ROTATIONS",
    "STL10",
    "ArrayFolder",
    "DataSource",
    "FileList",
    "ImageFolder",
    "RotationInput",
    "SSLDataModule",
    "Shards",
    "Synthetic",
    "SyntheticImages",
    "UnlabeledFolder",
    "ViewAugmentation",
    "byol_views",
    "rotate_batch",
]
