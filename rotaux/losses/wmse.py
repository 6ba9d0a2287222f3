"""W-MSE's whitening and loss (Ermolov et al., "Whitening for Self-Supervised Representation
Learning", ICML 2021, Sec. 3 and Algorithm 1)."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

from rotaux.distributed import gather
from rotaux.errors import RotauxError


def cholesky_whiten(groups: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """Whiten each group of a ``(G, n, D)`` batch of embeddings with its own statistics.

    ``W (x - mu)`` with ``mu`` the group's mean and ``W = L^-1`` for the Cholesky factor
    ``L L^T = (1 - eps) Sigma + eps I`` of its unbiased covariance ``Sigma`` (Eq. 4-5 of the
    paper; ``eps`` is the official code's shrinkage ``w_eps``, 0 there and in solo-learn). The
    output of each group has zero mean and identity covariance, and gradients flow through
    ``mu`` and ``W`` as in the paper. A group needs more embeddings than dimensions (with
    ``eps`` 0); where a covariance is not positive definite the output is NaN, which the
    divergence guard reports, and nothing waits for the host. Computed in float32.
    """
    groups = groups.float()
    count, dim = groups.shape[1], groups.shape[2]
    centred = groups - groups.mean(dim=1, keepdim=True)
    covariance = centred.transpose(1, 2) @ centred / (count - 1)
    eye = torch.eye(dim, device=groups.device)
    factor, info = torch.linalg.cholesky_ex((1 - eps) * covariance + eps * eye)
    factor = factor.masked_fill((info != 0).view(-1, 1, 1), float("nan"))
    whitening = torch.linalg.solve_triangular(factor, eye.expand_as(factor), upper=False)
    return centred @ whitening.transpose(1, 2)


def wmse_loss(
    views: list[torch.Tensor],
    whitening_size: int,
    generator: torch.Generator,
    whitening_iters: int = 1,
    eps: float = 0.0,
) -> torch.Tensor:
    """W-MSE: MSE between the L2-normalised whitened embeddings of every pair of views.

    ``views`` are the ``(N, D)`` projections of the views of the same ``N`` samples on this rank.
    In each of ``whitening_iters`` iterations the samples of the global batch are split into
    groups of ``whitening_size`` by a random permutation drawn with ``generator`` (on the
    embeddings' device); each
    view of each group is whitened with that group's statistics (:func:`cholesky_whiten`), and
    the loss is ``2 - 2 cos`` between the whitened embeddings of two views of a sample, averaged
    over the samples, the pairs of views and the iterations (the official ``norm_mse_loss``,
    with gradient through both views; solo-learn's shortcut stops the second view's gradient).

    Under DDP the projections are gathered with gradient and every rank computes the same
    loss over the global batch, so the whitening statistics are global, the groups are drawn
    from the whole batch (the ``generator`` must be seeded alike on every rank), and DDP's
    averaged gradient is that of one process with the whole batch. Computed in float32 with
    autocast off.
    """
    with torch.autocast(views[0].device.type, enabled=False):
        gathered = torch.stack([gather(view.float()) for view in views])
        num_views, count, dim = gathered.shape
        if count % whitening_size:
            raise RotauxError(
                f"W-MSE whitens groups of whitening_size={whitening_size} samples, which must "
                f"divide the global batch of {count}: change --model.whitening_size or "
                "--data.batch_size."
            )
        pairs = list(itertools.combinations(range(num_views), 2))
        loss = gathered.new_zeros(())
        for _ in range(whitening_iters):
            order = torch.randperm(count, generator=generator, device=gathered.device)
            groups = gathered[:, order].reshape(-1, whitening_size, dim)
            whitened = F.normalize(cholesky_whiten(groups, eps), dim=-1)
            whitened = whitened.reshape(num_views, count, dim)
            for first, second in pairs:
                cosine = (whitened[first] * whitened[second]).sum(dim=-1).mean()
                loss = loss + 2 - 2 * cosine
        return loss / (whitening_iters * len(pairs))
