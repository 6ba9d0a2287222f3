"""The Barlow Twins loss (Zbontar et al., "Barlow Twins: Self-Supervised Learning via
Redundancy Reduction", ICML 2021, Eq. 1-2)."""

from __future__ import annotations

import torch

from rotaux.distributed import all_reduce_sum, world_size


def standardize(views: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Standardise ``(V, N, D)`` embeddings per view and dimension over the global batch.

    The mean and the biased variance are those of the ``N x world size`` samples of all ranks
    (local batches are equal under DDP with ``drop_last``), with ``eps`` added to the variance
    as in the reference code's ``BatchNorm1d(affine=False)``. The sums are all-reduced with
    gradient, so under DDP this is exactly the single-process result.
    """
    count = views.shape[1] * world_size()
    mean = all_reduce_sum(views.sum(dim=1, keepdim=True)) / count
    centred = views - mean
    variance = all_reduce_sum(centred.pow(2).sum(dim=1, keepdim=True)) / count
    return centred * torch.rsqrt(variance + eps)


def off_diagonal_squares(matrices: torch.Tensor) -> torch.Tensor:
    """Sum of the squared off-diagonal entries of each square matrix in ``(..., D, D)``."""
    dim = matrices.shape[-1]
    eye = torch.eye(dim, dtype=torch.bool, device=matrices.device)
    return matrices.pow(2).masked_fill(eye, 0).sum(dim=(-2, -1))


def barlow_twins_loss(
    z_1: torch.Tensor, z_2: torch.Tensor, lambd: float = 0.0051, scale: float = 0.1
) -> torch.Tensor:
    """``scale * (sum_i (1 - C_ii)^2 + lambd * sum_{i != j} C_ij^2)`` where ``C`` is the
    cross-correlation of the batch-standardised ``(N, D)`` projections of the two views.

    ``C`` and the standardisation statistics are over the global batch: every rank computes the
    same loss from all-reduced sums, and after DDP averages the gradients they equal those of one
    process with the whole batch. ``lambd=0.0051`` is the paper's (official code);
    ``scale=0.1`` is solo-learn's CIFAR ``scale_loss`` (the paper's loss is unscaled). Computed in
    float32 with autocast off.
    """
    with torch.autocast(z_1.device.type, enabled=False):
        normed_1, normed_2 = standardize(torch.stack([z_1, z_2]).float())
        count = len(z_1) * world_size()
        correlation = all_reduce_sum(normed_1.T @ normed_2) / count
        on_diagonal = (1 - torch.diagonal(correlation)).pow(2).sum()
        off_diagonal = off_diagonal_squares(correlation).sum()
        return scale * (on_diagonal + lambd * off_diagonal)
