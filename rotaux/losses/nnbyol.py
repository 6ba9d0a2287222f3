"""NNBYOL's loss: BYOL's regression (Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020,
Eq. 2) onto nearest neighbours from a support set, the variant that Dwibedi et al. ("With a
Little Help from My Friends: Nearest-Neighbor Contrastive Learning of Visual Representations",
ICCV 2021) study alongside NNCLR and solo-learn ships as ``nnbyol``."""

from __future__ import annotations

import torch

from rotaux.losses.byol import normalized_mse


def nnbyol_loss(
    prediction_1: torch.Tensor,
    prediction_2: torch.Tensor,
    neighbours_1: torch.Tensor,
    neighbours_2: torch.Tensor,
) -> torch.Tensor:
    """``||p1/|p1| - nn2/|nn2|||^2 + ||p2/|p2| - nn1/|nn1|||^2``, each averaged over the batch.

    ``neighbours_v`` are the support-set neighbours of view ``v``'s target projection; each
    view's online prediction regresses the other view's neighbour, which gets no gradient.
    Per-sample terms only, so under DDP the mean of the rank losses is the global-batch loss.
    Computed in float32.
    """
    return normalized_mse(prediction_1, neighbours_2) + normalized_mse(prediction_2, neighbours_1)
