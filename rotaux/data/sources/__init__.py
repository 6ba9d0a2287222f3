"""Data sources (``--data.dataset``): typed descriptions of where the images come from. A source
of your own subclasses :class:`DataSource` (see its docstring and the README's "Your own
data")."""

from rotaux.data.sources.array_folder import ArrayFolder
from rotaux.data.sources.base import DataSource, SplitDatasets, held_out_split, stratified_split
from rotaux.data.sources.file_list import FileList
from rotaux.data.sources.image_folder import ImageFolder
from rotaux.data.sources.shards import Shards
from rotaux.data.sources.synthetic import Synthetic, SyntheticImages
from rotaux.data.sources.torchvision_datasets import CIFAR10, CIFAR100, STL10
from rotaux.data.sources.unlabeled_folder import UnlabeledFolder

DATA_SOURCES: tuple[type[DataSource], ...] = (
    CIFAR10,
    CIFAR100,
    STL10,
    ImageFolder,
    UnlabeledFolder,
    FileList,
    ArrayFolder,
    Shards,
    Synthetic,
)
"""Every source rotaux ships; error messages and the tests read it."""

__all__ = [
    "CIFAR10",
    "CIFAR100",
    "DATA_SOURCES",
    "STL10",
    "ArrayFolder",
    "DataSource",
    "FileList",
    "ImageFolder",
    "Shards",
    "SplitDatasets",
    "Synthetic",
    "SyntheticImages",
    "UnlabeledFolder",
    "held_out_split",
    "stratified_split",
]
