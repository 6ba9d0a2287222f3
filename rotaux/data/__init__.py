"""Data: the shared data module, augmentations, rotation copies and synthetic images."""

from rotaux.data.datamodule import SSLDataModule
from rotaux.data.rotation import rotate_batch
from rotaux.data.synthetic import SyntheticImages
from rotaux.data.transforms import ViewAugmentation, byol_views

__all__ = ["SSLDataModule", "SyntheticImages", "ViewAugmentation", "byol_views", "rotate_batch"]
