"""The rotated copies of the rotation task, made batched on the training device, and what the
data module must produce for them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from rotaux.distributed import own_rows, world_size

NUM_ROTATIONS = 4
"""0, 90, 180 and 270 degrees: the classes of the rotation task (Gidaris et al., ICLR 2018)."""

RotationSource = Literal["crop", "view", "views"]


@dataclass(frozen=True)
class RotationInput:
    """What the rotation auxiliary of a model needs from the data module.

    Args:
        source: ``crop`` rotates a separate crop (E-SSL), ``view`` the first augmented view,
            ``views`` each of the first ``views`` augmented views (the released code of
            Addepalli et al. 2022).
        copies: 4 rotated copies per image (all of 0/90/180/270) or 1 random rotation.
        crop_size: side of the separate crop; ``None`` is the data module's ``image_size``.
        crop_scale: area range of the separate crop; ``None`` is the first view's.
        views: how many leading views ``views`` rotates (the method's large crops).
    """

    source: RotationSource = "crop"
    copies: Literal[1, 4] = 4
    crop_size: int | None = None
    crop_scale: tuple[float, float] | None = None
    views: int = 1

    @property
    def groups(self) -> int:
        """Separately rotated images per sample: each goes through the backbone in a call of
        its own, and their losses add up."""
        return self.views if self.source == "views" else 1


def _rotation_indices(side: int, device: torch.device) -> torch.Tensor:
    """``(4, side * side)`` flat pixel indices: row ``k`` reads an image rotated by ``k``."""
    grid = torch.arange(side * side, device=device).view(1, side, side)
    return torch.stack([torch.rot90(grid, k, dims=(1, 2)).flatten() for k in range(NUM_ROTATIONS)])


def rotate_batch(images: torch.Tensor, copies: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotated copies of ``images`` (``B, C, H, W``, square) and their labels.

    Label ``k`` means ``torch.rot90(image, k, dims=(2, 3))``: a rotation by ``k * 90`` degrees
    counter-clockwise as displayed (the top-right pixel moves to the top-left for ``k = 1``).

    ``copies=4`` returns all four rotations of every image, ``(4B, C, H, W)`` ordered by label
    (all ``k=0``, then all ``k=1``, ...), as in Gidaris et al. 2018. ``copies=1`` rotates each
    image by one uniformly drawn ``k`` (the released code of Addepalli et al. 2022) with a single
    gather, without building the other three rotations; under DDP the draws are made for the
    global batch and each rank keeps its own. Neither path synchronises with the host.
    """
    if images.shape[-1] != images.shape[-2]:
        raise ValueError(f"Rotation needs square images, got {tuple(images.shape[-2:])}.")
    batch = images.shape[0]
    if copies == NUM_ROTATIONS:
        labels = torch.arange(NUM_ROTATIONS, device=images.device).repeat_interleave(batch)
        rotations = [torch.rot90(images, k, dims=(2, 3)) for k in range(NUM_ROTATIONS)]
        return torch.cat(rotations), labels
    if copies == 1:
        # drawn for the global batch, so that under DDP every rank's images get their own
        # rotations (every rank's generator is seeded alike) and the draws equal one process's
        drawn = torch.randint(NUM_ROTATIONS, (batch * world_size(),), device=images.device)
        labels = own_rows(drawn, batch)
        side = images.shape[-1]
        indices = _rotation_indices(side, images.device)[labels]
        flat = images.flatten(2).gather(2, indices[:, None, :].expand(-1, images.shape[1], -1))
        return flat.view_as(images).contiguous(memory_format=_memory_format(images)), labels
    raise ValueError(f"copies must be 1 or 4, got {copies}.")


def _memory_format(images: torch.Tensor) -> torch.memory_format:
    if images.dim() == 4 and images.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def rotate_views(views: list[torch.Tensor], copies: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`rotate_batch` of each of ``views``, concatenated view after view (each view with
    its own random rotations when ``copies=1``)."""
    rotated = [rotate_batch(view, copies) for view in views]
    return torch.cat([images for images, _ in rotated]), torch.cat(
        [labels for _, labels in rotated]
    )
