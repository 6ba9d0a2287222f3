"""Datasets of image files listed by path, and finding such files under a folder."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset, Subset

from rotaux.errors import RotauxError


class FileSamples(Dataset):
    """``(image, label)`` of the files at ``paths``: ``reader(path)`` decodes each, ``targets``
    holds one label per file (-1: unlabeled). The ``targets`` attribute lets evaluation skip
    unlabeled files without decoding them.

    With ``channels`` set, an image with another channel count raises
    :class:`~rotaux.errors.RotauxError` naming its file (a batch would otherwise fail to stack
    with a message that names no file)."""

    def __init__(
        self,
        paths: list[str],
        targets: list[int],
        reader: Callable[[str], Any],
        channels: int | None = None,
    ) -> None:
        if len(paths) != len(targets):
            raise ValueError("FileSamples needs one target per path.")
        self.paths = paths
        self.targets = targets
        self.reader = reader
        self.channels = channels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        path = self.paths[index]
        image = self.reader(path)
        if self.channels is not None and image.shape[0] != self.channels:
            raise RotauxError(
                f"{path} has {image.shape[0]} channels, but the dataset's images have "
                f"{self.channels}. Every image of a dataset needs the same channel count: "
                "convert or remove this file."
            )
        return image, self.targets[index]

    def without(self, paths: set[str]) -> FileSamples:
        """The same samples less those stored at ``paths``."""
        kept = [i for i, path in enumerate(self.paths) if path not in paths]
        return FileSamples(
            [self.paths[i] for i in kept],
            [self.targets[i] for i in kept],
            self.reader,
            self.channels,
        )


def sample_paths(dataset: Dataset) -> list[str]:
    """The file paths behind a :class:`FileSamples` or a ``Subset`` of one, else ``[]``."""
    if isinstance(dataset, Subset):
        return [sample_paths(dataset.dataset)[i] for i in dataset.indices]
    return list(getattr(dataset, "paths", []))


def _visible(name: str) -> bool:
    # ._name files are macOS metadata beside the real image, and hidden folders are caches
    return not name.startswith(".")


def walk_files(root: Path, extensions: tuple[str, ...]) -> Iterator[str]:
    """Paths under ``root`` at any depth whose name ends in one of ``extensions`` (any case),
    hidden files and folders skipped, symbolic links followed, in sorted order per folder."""
    for folder, subfolders, files in os.walk(root, followlinks=True):
        subfolders[:] = sorted(name for name in subfolders if _visible(name))
        for name in sorted(files):
            if _visible(name) and name.lower().endswith(extensions):
                yield os.path.join(folder, name)


def find_files(root: str, extensions: tuple[str, ...], what: str) -> list[str]:
    """Every :func:`walk_files` path under ``root``, refusing a missing folder or one without
    such files with a :class:`~rotaux.errors.RotauxError` that says what was looked for."""
    folder = Path(root)
    if not folder.is_dir():
        raise RotauxError(
            f"Data root {root!r} does not exist or is not a folder. Set --data.dataset.root to "
            f"the folder holding the {what}."
        )
    paths = list(walk_files(folder, extensions))
    if not paths:
        raise RotauxError(
            f"{root} holds no {what} at any depth (accepted extensions: "
            f"{', '.join(extensions)}). Point --data.dataset.root at the folder holding them."
        )
    return paths
