"""Data sources (``--data.dataset``): typed descriptions of where the images come from. A source
of your own subclasses :class:`DataSource` (see its docstring and the README's "Your own
data")."""

from rotaux.data.sources.base import DataSource, SplitDatasets, stratified_split
from rotaux.data.sources.image_folder import ImageFolder
from rotaux.data.sources.synthetic import Synthetic, SyntheticImages
from rotaux.data.sources.torchvision_datasets import CIFAR10, CIFAR100, STL10

DATA_SOURCES: tuple[type[DataSource], ...] = (CIFAR10, CIFAR100, STL10, ImageFolder, Synthetic)
"""Every source rotaux ships; error messages and the tests read it."""

__all__ = [
    "CIFAR10",
    "CIFAR100",
    "DATA_SOURCES",
    "STL10",
    "DataSource",
    "ImageFolder",
    "SplitDatasets",
    "Synthetic",
    "SyntheticImages",
    "stratified_split",
]
