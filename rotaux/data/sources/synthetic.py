"""Synthetic images with an orientation, for tests and smoke runs: no files, no download."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from rotaux.data.sources.base import DataSource, SplitDatasets
from rotaux.errors import RotauxError


class SyntheticImages(Dataset):
    """``num_samples`` uint8 RGB images in ``num_classes`` classes, made in memory from a seed.

    Each image has a sky-to-ground brightness gradient (light at the top) and an upward-pointing
    triangle standing on the lower part of the image, so "which way is up" is well defined and
    the rotation task is learnable. The class sets the angle of a stripe texture over the whole
    image (angles spread over 0-90 degrees, so horizontal flips do not map one class onto
    another) and the triangle's hue; stripe phase, position, size, tint and pixel noise vary per
    image.
    """

    def __init__(
        self, num_samples: int = 2048, num_classes: int = 10, image_size: int = 32, seed: int = 0
    ) -> None:
        if num_samples < 1 or num_classes < 1:
            raise ValueError("SyntheticImages needs at least one sample and one class.")
        generator = torch.Generator().manual_seed(seed)
        self.targets = torch.arange(num_samples) % num_classes
        self.targets = self.targets[torch.randperm(num_samples, generator=generator)]
        self.classes = [f"class_{index}" for index in range(num_classes)]
        self.images = _draw(self.targets, num_classes, image_size, generator)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.targets[index])


def _draw(
    labels: torch.Tensor, num_classes: int, size: int, generator: torch.Generator
) -> torch.Tensor:
    count = len(labels)

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(count, 1, 1, generator=generator)

    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    y, x = coords.view(1, size, 1), coords.view(1, 1, size)
    tint = 0.7 + 0.3 * torch.rand(count, 3, 1, 1, generator=generator)
    background = (0.95 - 0.7 * y).unsqueeze(1) * tint

    base, height = uniform(0.8, 0.95), uniform(0.35, 0.55)
    centre, half_width = uniform(0.3, 0.7), uniform(0.2, 0.3)
    apex = base - height
    depth = ((y - apex) / height).clamp(min=0)
    inside = (y >= apex) & (y <= base) & ((x - centre).abs() <= half_width * depth)

    hue = labels.float() / num_classes
    phases = hue.view(count, 1) + torch.tensor([0.0, 1 / 3, 2 / 3])
    colour = 0.5 + 0.45 * torch.cos(2 * math.pi * phases)
    stripes = 1 + (labels % 3).float().view(count, 1, 1)
    shade = 0.75 + 0.25 * torch.cos(2 * math.pi * stripes * depth)
    triangle = colour.view(count, 3, 1, 1) * shade.unsqueeze(1)

    angle = (math.pi / 2) * (labels.float() + 0.5) / num_classes
    phase = 2 * math.pi * torch.rand(count, 1, 1, generator=generator)
    direction = x * torch.cos(angle).view(count, 1, 1) + y * torch.sin(angle).view(count, 1, 1)
    texture = 0.2 * torch.cos(2 * math.pi * 3 * direction + phase).unsqueeze(1)

    image = torch.where(inside.unsqueeze(1), triangle, background) + texture
    image = image + 0.03 * torch.randn(image.shape, generator=generator)
    return (image.clamp(0, 1) * 255).round().to(torch.uint8)


@dataclass(frozen=True)
class Synthetic(DataSource):
    """:class:`SyntheticImages` generated in memory: a training set and a validation set drawn
    with the next seed. For tests and smoke runs.

    Args:
        size: training images.
        classes: number of classes.
        side: image side in pixels.
        val_fraction: validation images as a fraction of ``size`` (at least one per class).
        seed: seed of the training images (the validation images use ``seed + 1``).
    """

    size: int = 2048
    classes: int = 10
    side: int = 32
    val_fraction: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.size < 1 or self.classes < 1 or self.side < 1:
            raise RotauxError(
                f"Synthetic needs size, classes and side >= 1, got size={self.size}, "
                f"classes={self.classes}, side={self.side}."
            )

    @property
    def image_size(self) -> int:
        return self.side

    @property
    def mean(self) -> tuple[float, ...]:
        return (0.5, 0.5, 0.5)

    @property
    def std(self) -> tuple[float, ...]:
        return (0.25, 0.25, 0.25)

    @property
    def native_size(self) -> int:
        return self.side

    def load(self) -> SplitDatasets:
        train = SyntheticImages(self.size, self.classes, self.side, seed=self.seed)
        val_size = max(self.classes, round(self.size * self.val_fraction))
        val = SyntheticImages(val_size, self.classes, self.side, seed=self.seed + 1)
        return SplitDatasets(train, val, train.classes)
