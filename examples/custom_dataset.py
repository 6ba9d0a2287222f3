"""A data source written in user code: no change to rotaux needed.

The images here are generated (noisy discs and squares, 1 channel, 48x48 px), so the example
runs anywhere; a real source reads its files in ``load``. The contract is the docstring of
:class:`rotaux.data.DataSource`: a frozen dataclass whose fields are its options, ``load()``
returning ``SplitDatasets(train, val, classes)`` whose datasets give ``(image, label)`` with
``image`` a PIL image or a ``(C, H, W)`` uint8/float tensor and ``label`` an int (-1:
unlabeled), plus ``channels``, ``mean``/``std``, ``image_size`` and ``native_size``.

Through the command line (the module is found on PYTHONPATH; the backbone takes 1 channel):

    PYTHONPATH=examples rotaux fit --config configs/smoke.yaml \
        --data.dataset custom_dataset.Shapes --data.dataset.size 512 \
        --model.backbone.channels 1
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from rotaux.data import DataSource
from rotaux.data.sources import SplitDatasets
from rotaux.errors import RotauxError

CLASSES = ["disc", "square"]


class ShapeImages(Dataset):
    """``count`` grayscale images, each a bright disc or square on a dark noisy background.

    ``targets`` (one label per image) lets evaluation skip unlabeled images without drawing
    them; every label here is known."""

    def __init__(self, count: int, side: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.targets = torch.randint(len(CLASSES), (count,), generator=generator).tolist()
        coords = torch.arange(side, dtype=torch.float32)
        y, x = coords.view(side, 1), coords.view(1, side)
        centres = side / 4 + torch.rand(count, 2, generator=generator) * side / 2
        radius = side / 6 + torch.rand(count, generator=generator) * side / 8
        images = []
        for label, (cy, cx), r in zip(self.targets, centres.tolist(), radius.tolist(), strict=True):
            if CLASSES[label] == "disc":
                inside = (y - cy) ** 2 + (x - cx) ** 2 <= r**2
            else:
                inside = ((y - cy).abs() <= r) & ((x - cx).abs() <= r)
            noise = 20 * torch.rand(side, side, generator=generator)
            images.append((inside.float() * 180 + 40 + noise).to(torch.uint8))
        self.images = torch.stack(images).unsqueeze(1)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        # a (C, H, W) uint8 tensor and an int label, as the DataSource contract asks
        return self.images[index], self.targets[index]


@dataclass(frozen=True)
class Shapes(DataSource):
    """Grayscale discs and squares, generated from a seed.

    Args:
        size: training images.
        val_size: validation images (drawn with the next seed).
        side: image side in pixels.
        seed: seed of the training images.
    """

    size: int = 512
    val_size: int = 128
    side: int = 48
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.size, self.val_size, self.side) < 1:
            raise RotauxError("Shapes needs size, val_size and side >= 1.")

    @property
    def channels(self) -> int:
        return 1

    @property
    def mean(self) -> tuple[float, ...]:
        return (0.3,)

    @property
    def std(self) -> tuple[float, ...]:
        return (0.3,)

    @property
    def image_size(self) -> int:
        return 32

    @property
    def native_size(self) -> int:
        return self.side

    def load(self) -> SplitDatasets:
        return SplitDatasets(
            ShapeImages(self.size, self.side, self.seed),
            ShapeImages(self.val_size, self.side, self.seed + 1),
            list(CLASSES),
        )
