"""What every data source is: a typed description of where images come from, which loads the
training and validation splits.

A :class:`DataSource` is a frozen dataclass (``--data.dataset CIFAR10 --data.dataset.root
./data``); it owns its own options, and the data module asks it for datasets and for the
normalisation and crop size that suit its images. A source of your own is a subclass in your
own module, given as ``--data.dataset your_module.YourSource`` (README, "Your own data";
``examples/custom_dataset.py``).
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

    Images are PIL images or uint8 or float tensors ``(C, H, W)``; a label below 0 means
    unlabeled. ``classes`` is empty when the source has no labels at all; ``val`` may be empty
    (a source without a validation split)."""

    train: Dataset
    val: Dataset
    classes: list[str]


class DataSource:
    """Base of the data sources. Subclasses are frozen dataclasses and implement :meth:`load`.

    The contract a source of your own fulfils (rotaux needs nothing else; see
    ``examples/custom_dataset.py``):

    - It is a ``@dataclass(frozen=True)`` subclass whose fields are its options, each with a
      default and an ``Args:`` entry in the docstring (the command line reads them:
      ``--data.dataset my_module.MySource --data.dataset.root DIR``).
    - :meth:`load` returns :class:`SplitDatasets` ``(train, val, classes)``. ``train`` and
      ``val`` are map-style ``torch.utils.data.Dataset`` s (``__len__`` and ``__getitem__``)
      whose ``__getitem__(index)`` returns ``(image, label)``:

      * ``image``: a PIL image, a ``torch.uint8`` tensor ``(C, H, W)`` with values 0..255, or a
        float tensor ``(C, H, W)``: in ``[0, 1]`` for RGB images, in the data's own units for
        other bands (``--data.mean``/``--data.std`` are then in those units). Every image of a
        source has :attr:`channels` channels; sizes may vary (crops and resizing follow).
      * ``label``: an ``int``, the index into ``classes``, or ``-1`` for an unlabeled image
        (the evaluation callbacks skip those).

      ``classes`` lists the class names (``[]`` for a source without labels: the online probe,
      the kNN monitor and ``LinearEval`` then use ``--data.eval_dataset`` or are switched off).
      ``val`` may be empty. A dataset with a ``targets`` attribute (one label per sample, as
      torchvision's have) lets evaluation skip unlabeled images without decoding them. Check
      the data in ``load`` and raise :class:`~rotaux.errors.RotauxError` naming the file and
      the fix; it runs in every process before training starts.
    - :attr:`channels` (3 unless overridden) is the images' channel count; :attr:`is_rgb` says
      whether they are RGB colour images, on which colour jitter's saturation and hue,
      grayscale and solarisation are defined (otherwise those are refused and brightness and
      contrast act per channel, :mod:`rotaux.data.transforms`).
    - :attr:`mean` and :attr:`std` (one value per channel, in ``[0, 1]`` units for uint8 and
      PIL images) are the normalisation; :attr:`image_size` the default crop side;
      :attr:`native_size` the images' side when they all share one (else ``None``, and
      :meth:`image_sides` may give a sample of sides for the crop-size check).
    - :meth:`prepare` downloads once, before any process loads (optional).

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
    def channels(self) -> int:
        """Channels of every image that :meth:`load`'s datasets return."""
        return 3

    @property
    def is_rgb(self) -> bool:
        """Whether the images are RGB colour images (the colour augmentations need them)."""
        return self.channels == 3

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


def held_out_split(
    targets: list[int], val_fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """The validation hold-out of a source whose labels may be missing: none at
    ``val_fraction`` 0, a :func:`stratified_split` when every image has a label, else a seeded
    uniform draw of ``round(val_fraction * n)`` images (at least one, never all). Returns sorted
    train and val indices."""
    if val_fraction == 0:
        return list(range(len(targets))), []
    if not 0 < val_fraction < 1:
        raise RotauxError(f"val_fraction must be in [0, 1), got {val_fraction}.")
    if targets and min(targets) >= 0:
        return stratified_split(targets, val_fraction, seed)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(targets), generator=generator)
    held_out = min(max(round(val_fraction * len(targets)), 1), max(len(targets) - 1, 0))
    return sorted(order[held_out:].tolist()), sorted(order[:held_out].tolist())
