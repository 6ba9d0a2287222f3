"""A folder of multi-channel image arrays (any number of bands: grayscale, RGB-NIR,
Sentinel-2's 13)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from rotaux.data.sources.arrays import ARRAY_EXTENSIONS, ArrayLayout, array_shape, read_array
from rotaux.data.sources.base import DataSource, SplitDatasets, held_out_split
from rotaux.data.sources.file_samples import FileSamples, find_files, sample_paths, walk_files
from rotaux.errors import RotauxError

CHANNEL_CHECK_FILES = 64
"""Files, spread over the folder, whose channel count is checked before training; the others
are checked as they are read."""

STATISTICS_FILES = 32
"""Files the suggested per-channel statistics are computed from."""

_WHAT = "array files (.npy, .tif, .tiff)"


def _spread(paths: list[str], count: int) -> list[str]:
    step = max(1, len(paths) // count)
    return paths[::step][:count]


@dataclass(frozen=True)
class ArrayFolder(DataSource):
    """Images stored as arrays with any number of channels: ``.npy`` files and TIFF files
    (read with tifffile, ``pip install 'rotaux[tiff]'``), anywhere under ``root``. Each image
    becomes a ``(C, H, W)`` tensor: ``uint8`` arrays stay ``uint8`` (normalised as 8-bit images,
    statistics in ``[0, 1]`` units), any other type becomes ``float32`` in the data's own units
    (statistics in those units). All images must have the same channel count: a sample of
    :data:`CHANNEL_CHECK_FILES` files is checked before training, and any other file with
    another count stops training with its name.

    The bands are not assumed to be colours: colour jitter acts per channel (brightness and
    contrast) and the RGB-only augmentations (saturation, hue, grayscale, solarisation) are
    refused (:mod:`rotaux.data.transforms`). There are no default statistics: give
    ``--data.mean`` and ``--data.std`` with one value per channel (the error without them
    suggests values computed from a sample of the files) and ``--model.backbone.channels``.

    Args:
        root: the folder to search, at any depth.
        class_folders: the first folder level under ``root`` names each image's class
            (``root/<class>/.../<image>``); ``False``: every image is unlabeled.
        val_fraction: share held out as the validation split (seeded, stratified by class with
            ``class_folders``); 0: no validation split.
        split_seed: seed of that hold-out.
        layout: axis order of ``.npy`` arrays and of TIFF files whose band axis is not marked
            (``CHW``: bands first, ``HWC``: bands last). A 2-D array is one band.
    """

    root: str = "./data"
    class_folders: bool = False
    val_fraction: float = 0.0
    split_seed: int = 0
    layout: ArrayLayout = "CHW"

    @property
    def channels(self) -> int:
        first = next(walk_files(Path(self.root), ARRAY_EXTENSIONS), None)
        if first is None:
            find_files(self.root, ARRAY_EXTENSIONS, _WHAT)  # raises the missing-files error
        return array_shape(first, self.layout)[0]

    @property
    def is_rgb(self) -> bool:
        return False

    @property
    def mean(self) -> tuple[float, ...]:
        raise self._statistics_needed()

    @property
    def std(self) -> tuple[float, ...]:
        raise self._statistics_needed()

    def load(self) -> SplitDatasets:
        paths = find_files(self.root, ARRAY_EXTENSIONS, _WHAT)
        classes, targets = self._labels(paths)
        channels = self._checked_channels(paths)
        images = FileSamples(paths, targets, partial(read_array, layout=self.layout), channels)
        train_indices, val_indices = held_out_split(targets, self.val_fraction, self.split_seed)
        return SplitDatasets(Subset(images, train_indices), Subset(images, val_indices), classes)

    def image_sides(self, train: Dataset) -> list[int]:
        return [
            min(array_shape(path, self.layout)[1:]) for path in _spread(sample_paths(train), 16)
        ]

    def _labels(self, paths: list[str]) -> tuple[list[str], list[int]]:
        if not self.class_folders:
            return [], [-1] * len(paths)
        parts = [Path(path).relative_to(self.root).parts for path in paths]
        loose = [path for path, part in zip(paths, parts, strict=True) if len(part) < 2]
        if loose:
            raise RotauxError(
                f"With class_folders every image must be in {self.root}/<class>/, but "
                f"{len(loose)} are directly in {self.root} (first: {loose[0]}). Move them into "
                "class folders or set --data.dataset.class_folders false."
            )
        classes = sorted({part[0] for part in parts})
        index = {name: position for position, name in enumerate(classes)}
        return classes, [index[part[0]] for part in parts]

    def _checked_channels(self, paths: list[str]) -> int:
        by_count: dict[int, list[str]] = defaultdict(list)
        for path in _spread(paths, CHANNEL_CHECK_FILES):
            by_count[array_shape(path, self.layout)[0]].append(path)
        if len(by_count) > 1:
            listed = "; ".join(
                f"{count} channels: {', '.join(files[:3])}"
                + (f" and {len(files) - 3} more" if len(files) > 3 else "")
                for count, files in sorted(by_count.items())
            )
            raise RotauxError(
                f"The arrays under {self.root} have different channel counts ({listed}). Every "
                "image of a dataset needs the same channels: convert or remove the odd files"
                + (
                    ", or set --data.dataset.layout HWC if the arrays are (H, W, C)."
                    if self.layout == "CHW"
                    else "."
                )
            )
        return next(iter(by_count))

    def _statistics_needed(self) -> RotauxError:
        paths = _spread(find_files(self.root, ARRAY_EXTENSIONS, _WHAT), STATISTICS_FILES)
        arrays = [read_array(path, self.layout) for path in paths]
        suggestion = ""
        if len({array.shape[0] for array in arrays}) == 1:
            scale = 255.0 if arrays[0].dtype == torch.uint8 else 1.0
            pixels = np.concatenate(
                [array.flatten(1).double().numpy() / scale for array in arrays], axis=1
            )
            mean = ", ".join(f"{value:.4g}" for value in pixels.mean(axis=1))
            std = ", ".join(f"{value:.4g}" for value in pixels.std(axis=1))
            suggestion = (
                f" From {len(paths)} of the files: --data.mean '[{mean}]' --data.std '[{std}]'."
            )
        return RotauxError(
            f"ArrayFolder has no default statistics for the {arrays[0].shape[0]}-channel arrays "
            f"under {self.root}: give --data.mean and --data.std with one value per channel "
            f"(in [0, 1] units for uint8 arrays, in the arrays' own units otherwise).{suggestion}"
        )
