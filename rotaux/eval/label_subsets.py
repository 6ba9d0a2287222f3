"""The labelled training images of semi-supervised evaluation: a seeded, stratified fraction of
every class, or the image list of a published split (SimCLR's ImageNet 1% and 10%)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import Dataset, Subset

from rotaux.data.datamodule import EvalDataset
from rotaux.errors import RotauxError
from rotaux.eval.features import _recorded_labels


def stratified_fraction(labels: Sequence[int], fraction: float, seed: int) -> list[int]:
    """Positions of a seeded, stratified ``fraction`` of ``labels``: ``round(fraction * n_c)``
    of every class ``c`` (at least one), drawn at random with ``seed``; sorted."""
    if not 0 < fraction <= 1:
        raise RotauxError(f"A label fraction must be in (0, 1], got {fraction}.")
    labels = torch.as_tensor(list(labels))
    generator = torch.Generator().manual_seed(seed)
    chosen: list[int] = []
    for label in labels.unique(sorted=True):
        members = torch.nonzero(labels == label).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        chosen += members[: max(1, round(fraction * len(members)))].tolist()
    return sorted(chosen)


def dataset_labels(dataset: Dataset, indices: list[int]) -> list[int]:
    """The labels of ``dataset[indices]``: from the labels the dataset records (torchvision,
    image folders, synthetic images), else read sample by sample."""
    recorded = _recorded_labels(dataset)
    if recorded is not None:
        return recorded[torch.as_tensor(indices, dtype=torch.long)].tolist()
    return [int(dataset[index][1]) for index in indices]


def sample_paths(dataset: Dataset) -> list[str] | None:
    """The file path of every sample of ``dataset`` where it records them (an image folder's
    ``samples``, a file list's ``paths``, through subsets), else ``None``."""
    if isinstance(dataset, EvalDataset):
        return sample_paths(dataset.base)
    if isinstance(dataset, Subset):
        paths = sample_paths(dataset.dataset)
        return None if paths is None else [paths[index] for index in dataset.indices]
    samples = getattr(dataset, "samples", None)
    if samples is not None and len(samples) == len(dataset):
        return [str(path) for path, _ in samples]
    paths = getattr(dataset, "paths", None)
    if paths is not None and len(paths) == len(dataset):
        return [str(path) for path in paths]
    return None


@dataclass
class StratifiedFraction:
    """Selects a seeded, stratified ``fraction`` of the labelled training images of every class
    (:func:`stratified_fraction`); ``count`` is set once it has selected."""

    fraction: float
    seed: int
    count: int = 0

    def __call__(self, train: Dataset, labelled: list[int]) -> list[int]:
        positions = stratified_fraction(dataset_labels(train, labelled), self.fraction, self.seed)
        self.count = len(positions)
        return [labelled[position] for position in positions]

    def describe(self) -> str:
        return f"{100 * self.fraction:g}% stratified (seed {self.seed}): {self.count} images"


@dataclass
class ListedImages:
    """Selects the labelled training images whose file names appear in ``path``, a text file
    with one image file name per line, as SimCLR publishes its ImageNet 1% and 10% subsets
    (``imagenet_subsets/1percent.txt`` and ``10percent.txt`` in google-research/simclr).
    Names are matched on the file's base name, so the list fits any folder layout; names not
    in the dataset (an ImageNet list on an ImageNet-100 folder) are skipped and counted."""

    path: str
    count: int = 0
    listed: int = 0
    missing: list[str] = field(default_factory=list)

    def __call__(self, train: Dataset, labelled: list[int]) -> list[int]:
        file = Path(self.path)
        if not file.is_file():
            raise RotauxError(
                f"Label file {self.path} does not exist; give a text file with one image file "
                "name per line (SimCLR's imagenet_subsets/1percent.txt, for example)."
            )
        names = [line.strip() for line in file.read_text().splitlines() if line.strip()]
        paths = sample_paths(train)
        if paths is None:
            raise RotauxError(
                f"--label_files needs a data source that records its image files (ImageFolder, "
                f"FileList); {type(train).__name__} does not. Use --fractions without label "
                "files for a stratified subset instead."
            )
        wanted = set(names)
        chosen = [index for index in labelled if Path(paths[index]).name in wanted]
        found = {Path(paths[index]).name for index in chosen}
        self.missing = sorted(wanted - found)
        self.listed, self.count = len(names), len(chosen)
        if not chosen:
            raise RotauxError(
                f"None of the {len(names)} images listed in {self.path} is among the labelled "
                f"training images (for example {names[:3]}); is it the list for this dataset?"
            )
        return chosen

    def describe(self) -> str:
        skipped = f", {len(self.missing)} listed names not found" if self.missing else ""
        return f"{Path(self.path).name}: {self.count} images{skipped}"
