"""The image files behind a dataset of files, for tools that need the files themselves rather
than decoded images (``rotaux shards``, decoding on the training device)."""

from __future__ import annotations

from torch.utils.data import Dataset, Subset


def listed_files(dataset: Dataset) -> list[tuple[str, int]] | None:
    """``(path, label)`` of every sample of a dataset read from image files, in index order:
    torchvision's ``DatasetFolder``/``ImageFolder`` (``samples``), rotaux's ``FileSamples``
    (``paths`` and ``targets``) and ``Subset`` s of either. ``None`` for any other dataset."""
    if isinstance(dataset, Subset):
        files = listed_files(dataset.dataset)
        return None if files is None else [files[index] for index in dataset.indices]
    samples = getattr(dataset, "samples", None)
    if isinstance(samples, list):
        return [(str(path), int(label)) for path, label in samples]
    paths, targets = getattr(dataset, "paths", None), getattr(dataset, "targets", None)
    if isinstance(paths, list) and isinstance(targets, list) and len(paths) == len(targets):
        return [(str(path), int(label)) for path, label in zip(paths, targets, strict=True)]
    return None
