"""The VIbCReg loss (Lee & Aune, "VIbCReg: Variance-Invariance-better-Covariance Regularization
for Self-Supervised Learning on Time Series", 2021, Sec. 3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rotaux.distributed import all_reduce_sum, world_size
from rotaux.losses.barlow_twins import off_diagonal_squares


def vibcreg_loss(
    z_1: torch.Tensor,
    z_2: torch.Tensor,
    invariance_weight: float = 25.0,
    variance_weight: float = 25.0,
    covariance_weight: float = 200.0,
    eps: float = 1e-4,
) -> torch.Tensor:
    """VICReg's loss with a normalised covariance term, for the ``(N, D)`` projections of two
    views: ``lambda * s(Z, Z') + mu * (v(Z) + v(Z')) + nu * (c(Z) + c(Z'))``.

    ``s`` is the mean squared difference and ``v(Z) = mean_j relu(1 - sqrt(Var(z_j) + eps))``
    with the unbiased variance, as in VICReg. The better covariance term is
    ``c(Z) = sum_{i != j} C_ij^2 / D^2`` where ``C`` is the correlation matrix of ``Z`` (its
    columns centred and L2-normalised over the batch), so it stays in ``[0, 1]`` whatever the
    scale of ``Z``. Weights 25/25/200 are the paper's and solo-learn's. Every statistic is over
    the global batch from all-reduced sums, so under DDP every rank computes the single-process
    loss and DDP's averaged gradient is that of one process with the whole batch. Computed in
    float32 with autocast off.
    """
    with torch.autocast(z_1.device.type, enabled=False):
        views = torch.stack([z_1, z_2]).float()
        count = views.shape[1] * world_size()
        dim = views.shape[2]
        invariance = all_reduce_sum((views[0] - views[1]).pow(2).sum()) / (count * dim)
        mean = all_reduce_sum(views.sum(dim=1, keepdim=True)) / count
        centred = views - mean
        products = all_reduce_sum(centred.transpose(1, 2) @ centred)
        squares = torch.diagonal(products, dim1=1, dim2=2)
        variance = F.relu(1 - torch.sqrt(squares / (count - 1) + eps)).mean(dim=1).sum()
        # F.normalize's floor on the norms (1e-12), taken before the root so that a constant
        # dimension gets a zero gradient rather than 0/0
        norms = squares.clamp(min=1e-24).sqrt()
        correlation = products / (norms.unsqueeze(2) * norms.unsqueeze(1))
        covariance = off_diagonal_squares(correlation).sum() / dim**2
        return (
            invariance_weight * invariance
            + variance_weight * variance
            + covariance_weight * covariance
        )
