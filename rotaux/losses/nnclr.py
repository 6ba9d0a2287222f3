"""NNCLR's nearest-neighbour contrastive loss (Dwibedi et al., "With a Little Help from My
Friends: Nearest-Neighbor Contrastive Learning of Visual Representations", ICCV 2021, Eq. 2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rotaux.distributed import gather, rank


@torch.no_grad()
def nearest_neighbours(embeddings: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    """For each row of ``embeddings`` the row of ``support`` with the highest cosine similarity
    (NNCLR's ``NN(z, Q)``), in float32 and without gradient."""
    embeddings = F.normalize(embeddings.float(), dim=-1)
    support = F.normalize(support.float(), dim=-1)
    return support[(embeddings @ support.T).argmax(dim=1)]


def nnclr_loss(
    neighbours: torch.Tensor, predictions: torch.Tensor, temperature: float
) -> torch.Tensor:
    """NT-Xent where the positive of sample ``i`` is its support-set neighbour ``neighbours[i]``
    (no gradient) and the candidates are the ``predictions`` of the other view over the global
    batch: mean over this rank's samples of
    ``-log exp(nn_i.p_i/t) / sum_k exp(nn_i.p_k/t)``, with cosine similarities in float32.

    Candidates are gathered from all ranks with gradient, so after DDP averages the parameter
    gradients, training matches one process holding the whole batch.
    """
    neighbours = F.normalize(neighbours.detach().float(), dim=-1)
    predictions = F.normalize(predictions.float(), dim=-1)
    candidates = gather(predictions)
    logits = neighbours @ candidates.T / temperature
    targets = torch.arange(len(neighbours), device=neighbours.device) + rank() * len(neighbours)
    return F.cross_entropy(logits, targets)
