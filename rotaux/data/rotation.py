"""The rotated copies of the rotation task, made batched on the training device."""

from __future__ import annotations

import torch

NUM_ROTATIONS = 4


def rotate_batch(images: torch.Tensor, copies: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotated copies of ``images`` (``B, C, H, W``, square) and their labels.

    Label ``k`` means ``torch.rot90(image, k, dims=(2, 3))``: a rotation by ``k * 90`` degrees
    counter-clockwise as displayed (the top-right pixel moves to the top-left for ``k = 1``).

    ``copies=4`` returns all four rotations of every image, ``(4B, C, H, W)`` ordered by label
    (all ``k=0``, then all ``k=1``, ...), as in Gidaris et al. 2018. ``copies=1`` rotates each
    image by one uniformly drawn ``k`` (the released code of Addepalli et al. 2022). Neither path
    synchronises with the host.
    """
    if images.shape[-1] != images.shape[-2]:
        raise ValueError(f"Rotation needs square images, got {tuple(images.shape[-2:])}.")
    rotations = [torch.rot90(images, k, dims=(2, 3)) for k in range(NUM_ROTATIONS)]
    batch = images.shape[0]
    if copies == NUM_ROTATIONS:
        labels = torch.arange(NUM_ROTATIONS, device=images.device).repeat_interleave(batch)
        return torch.cat(rotations), labels
    if copies == 1:
        labels = torch.randint(NUM_ROTATIONS, (batch,), device=images.device)
        chosen = torch.stack(rotations)[labels, torch.arange(batch, device=images.device)]
        return chosen, labels
    raise ValueError(f"copies must be 1 or 4, got {copies}.")
