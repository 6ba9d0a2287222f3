"""NNSiam's loss: SimSiam's negative cosine (Chen & He, "Exploring Simple Siamese Representation
Learning", CVPR 2021, Eq. 4) against nearest neighbours from a support set, the variant that
Dwibedi et al. ("With a Little Help from My Friends: Nearest-Neighbor Contrastive Learning of
Visual Representations", ICCV 2021) study alongside NNCLR and solo-learn ships as ``nnsiam``."""

from __future__ import annotations

import torch

from rotaux.losses.simsiam import negative_cosine


def nnsiam_loss(
    prediction_1: torch.Tensor,
    prediction_2: torch.Tensor,
    neighbours_1: torch.Tensor,
    neighbours_2: torch.Tensor,
) -> torch.Tensor:
    """``-cos(p1, nn2) / 2 - cos(p2, nn1) / 2``, each averaged over the batch; its minimum is -1.

    ``neighbours_v`` are the support-set neighbours of view ``v``'s projection and get no
    gradient (they stand where SimSiam's stop-gradient projection stands). Per-sample terms only,
    so under DDP the mean of the rank losses is the global-batch loss. Computed in float32.
    """
    return (
        negative_cosine(prediction_1, neighbours_2) + negative_cosine(prediction_2, neighbours_1)
    ) / 2
