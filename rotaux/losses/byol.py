"""The BYOL regression loss (Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020, Eq. 2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def normalized_mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``||p/|p| - z/|z|||^2 = 2 - 2 cos(p, z)``; no gradient to ``target``.

    Computed in float32 so that the normalisation is accurate under bf16/fp16 autocast.
    """
    prediction = F.normalize(prediction.float(), dim=-1)
    target = F.normalize(target.detach().float(), dim=-1)
    return (2 - 2 * (prediction * target).sum(dim=-1)).mean()


def byol_loss(
    prediction_1: torch.Tensor,
    prediction_2: torch.Tensor,
    target_1: torch.Tensor,
    target_2: torch.Tensor,
) -> torch.Tensor:
    """Symmetrised BYOL loss: each view's prediction regresses the other view's target."""
    return normalized_mse(prediction_1, target_2) + normalized_mse(prediction_2, target_1)
