"""The VICReg loss (Bardes, Ponce & LeCun, "VICReg: Variance-Invariance-Covariance
Regularization for Self-Supervised Learning", ICLR 2022, Eq. 1-6)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rotaux.distributed import all_reduce_sum, world_size
from rotaux.losses.barlow_twins import off_diagonal_squares


def vicreg_loss(
    z_1: torch.Tensor,
    z_2: torch.Tensor,
    invariance_weight: float = 25.0,
    variance_weight: float = 25.0,
    covariance_weight: float = 1.0,
    eps: float = 1e-4,
) -> torch.Tensor:
    """``lambda * s(Z, Z') + mu * (v(Z) + v(Z')) + nu * (c(Z) + c(Z'))`` (Eq. 6) of the
    ``(N, D)`` projections of two views.

    ``s`` is the mean squared difference, ``v(Z) = mean_j relu(1 - sqrt(Var(z_j) + eps))`` with
    the unbiased variance, and ``c(Z) = sum_{i != j} C_ij^2 / D`` with ``C`` the unbiased
    covariance matrix. All three are over the global batch: every rank computes the same loss
    from all-reduced sums (global mean, then global covariance), and after DDP averages the
    gradients they equal those of one process with the whole batch (local batches are equal
    under ``drop_last``). Weights 25/25/1 and ``eps`` are the paper's; the variance terms of the
    two views are added as in Eq. 6 and solo-learn (the official code halves them). Computed in
    float32 with autocast off.
    """
    with torch.autocast(z_1.device.type, enabled=False):
        views = torch.stack([z_1, z_2]).float()
        count = views.shape[1] * world_size()
        dim = views.shape[2]
        squared_error = all_reduce_sum((views[0] - views[1]).pow(2).sum())
        invariance = squared_error / (count * dim)
        mean = all_reduce_sum(views.sum(dim=1, keepdim=True)) / count
        centred = views - mean
        covariance = all_reduce_sum(centred.transpose(1, 2) @ centred) / (count - 1)
        variances = torch.diagonal(covariance, dim1=1, dim2=2)
        variance = F.relu(1 - torch.sqrt(variances + eps)).mean(dim=1).sum()
        covariance_term = off_diagonal_squares(covariance).sum() / dim
        return (
            invariance_weight * invariance
            + variance_weight * variance
            + covariance_weight * covariance_term
        )
