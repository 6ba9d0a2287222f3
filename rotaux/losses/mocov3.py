"""MoCo v3's contrastive loss (Chen, Xie & He, "An Empirical Study of Training Self-Supervised
Vision Transformers", ICCV 2021, Algorithm 1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rotaux.distributed import gather_no_grad, rank


def mocov3_loss(query: torch.Tensor, key: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """``2 * temperature * CE(q k^T / temperature, positives)`` for queries ``(N, D)`` of one view
    against the keys of the other view ``(N, D)`` of the whole global batch: query ``i``'s
    positive is key ``i`` of its own image, every other image's key is a negative.

    The keys come from the momentum encoder without gradient, so under DDP they are gathered
    without autograd: each rank scores its own queries against all keys, and the mean of the rank
    losses (DDP's gradient average) is the loss of one process holding the whole batch. The
    factor ``2 * temperature`` is the paper's, which makes the gradient scale independent of the
    temperature. Computed in float32 with autocast off."""
    with torch.autocast(query.device.type, enabled=False):
        query = F.normalize(query.float(), dim=-1)
        keys = F.normalize(gather_no_grad(key.detach().float()), dim=-1)
        logits = query @ keys.T / temperature
        positives = torch.arange(len(query), device=query.device) + len(query) * rank()
        return F.cross_entropy(logits, positives) * (2 * temperature)
