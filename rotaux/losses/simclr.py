"""SimCLR's NT-Xent loss (Chen et al., "A Simple Framework for Contrastive Learning of Visual
Representations", ICML 2020, Eq. 1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rotaux.distributed import gather, rank


def nt_xent_loss(z_1: torch.Tensor, z_2: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """Normalised-temperature cross-entropy of two views ``(N, D)`` of the same ``N`` images.

    Each of the ``2N`` embeddings is an anchor whose positive is the other view of its image and
    whose negatives are the other ``2N - 2`` embeddings; the loss is the mean over anchors of
    ``-log softmax`` of the positive's cosine similarity divided by ``temperature``.

    Under DDP the candidates are gathered from all ranks with gradients flowing back to them,
    and each rank averages over its own anchors only. Local batches are equal (DDP with
    ``drop_last``), so the mean of the rank losses is the global loss and the DDP-averaged
    gradient is that of one process holding the whole batch. Computed in float32 with autocast
    off: the similarities are divided by a small temperature before the softmax.
    """
    with torch.autocast(z_1.device.type, enabled=False):
        local = F.normalize(torch.cat([z_1, z_2]).float(), dim=-1)
        candidates = gather(local)
        logits = local @ candidates.T / temperature
        count = len(local)
        anchors = torch.arange(count, device=local.device)
        offset = rank() * count
        # a comparison, not an indexed write: writing a Python bool copies it to the device
        # and makes the host wait
        columns = torch.arange(len(candidates), device=local.device)
        is_self = columns == (offset + anchors)[:, None]
        positives = offset + (anchors + len(z_1)) % count
        return F.cross_entropy(logits.masked_fill(is_self, float("-inf")), positives)
