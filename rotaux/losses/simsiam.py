"""SimSiam's loss (Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021,
Eq. 1-4)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def negative_cosine(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``D(p, z) = -cos(p, stopgrad(z))`` averaged over the batch (Eq. 1 with Eq. 3's
    stop-gradient). Computed in float32 so the normalisation is accurate under autocast."""
    return -F.cosine_similarity(prediction.float(), target.detach().float(), dim=-1).mean()


def simsiam_loss(
    prediction_1: torch.Tensor,
    prediction_2: torch.Tensor,
    projection_1: torch.Tensor,
    projection_2: torch.Tensor,
) -> torch.Tensor:
    """Symmetrised loss ``D(p1, z2) / 2 + D(p2, z1) / 2`` (Eq. 4); its minimum is -1."""
    return (
        negative_cosine(prediction_1, projection_2) + negative_cosine(prediction_2, projection_1)
    ) / 2
