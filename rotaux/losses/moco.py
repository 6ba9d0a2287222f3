"""MoCo's InfoNCE loss against a queue of negatives (He et al., "Momentum Contrast for
Unsupervised Visual Representation Learning", CVPR 2020, Eq. 1; MoCo v2, Chen et al. 2020)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def moco_loss(
    query: torch.Tensor, key: torch.Tensor, negatives: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Mean over the batch of ``-log exp(q.k+/t) / (exp(q.k+/t) + sum_n exp(q.n/t))``.

    ``query`` (``(B, D)``) is compared with its own ``key`` (the positive, no gradient) and with
    every row of ``negatives`` (``(K, D)``, no gradient), all L2-normalised here in float32. The
    normalisation also copies ``negatives``, so a queue may be updated in place after this call
    without disturbing the backward pass.
    """
    query = F.normalize(query.float(), dim=-1)
    key = F.normalize(key.detach().float(), dim=-1)
    negatives = F.normalize(negatives.detach().float(), dim=-1)
    positive_logits = (query * key).sum(dim=-1, keepdim=True)
    logits = torch.cat([positive_logits, query @ negatives.T], dim=1) / temperature
    targets = torch.zeros(len(query), dtype=torch.long, device=query.device)
    return F.cross_entropy(logits, targets)
