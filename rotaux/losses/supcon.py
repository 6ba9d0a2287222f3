"""The supervised contrastive loss (Khosla et al., "Supervised Contrastive Learning", NeurIPS
2020, Eq. 2). It uses the labels: a supervised reference, not a self-supervised method."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rotaux.distributed import gather, gather_no_grad, rank


def supcon_loss(
    views: list[torch.Tensor], labels: torch.Tensor, temperature: float = 0.2
) -> torch.Tensor:
    """SupCon's ``L^sup_out`` over the ``(N, D)`` projections ``views`` of ``V`` views of ``N``
    labelled samples.

    Every one of the ``V N`` embeddings (L2-normalised) is an anchor ``i``; its positives
    ``P(i)`` are the other embeddings of samples with its label (the other views of its own
    sample included) and ``A(i)`` all embeddings but itself. The anchor's term is
    ``-1/|P(i)| sum_{p in P(i)} log(exp(z_i.z_p/t) / sum_{a in A(i)} exp(z_i.z_a/t))``, averaged
    over the anchors (Eq. 2, the variant the paper recommends; solo-learn sums the positives
    inside the log, Eq. 3, and the official code also scales by ``t / 0.07``, which only
    rescales the gradient). A sample labelled ``-1`` (unlabelled) has no label to share: its
    positives are only its own other views, as in SimCLR, and it is a negative for every other
    sample.

    Under DDP the candidates and their labels are gathered from all ranks (the embeddings with
    gradient) and each rank averages over its own anchors; local batches are equal, so the mean
    of the ranks' losses is the global loss and DDP's averaged gradient that of one process with
    the whole batch. Computed in float32 with autocast off.
    """
    with torch.autocast(views[0].device.type, enabled=False):
        num_views, batch_size = len(views), len(views[0])
        anchors = F.normalize(torch.cat(views).float(), dim=-1)
        sample_ids = rank() * batch_size + torch.arange(batch_size, device=labels.device)
        # unlabelled samples get a key of their own, below every label
        keys = torch.where(labels >= 0, labels, -1 - sample_ids).repeat(num_views)
        candidates = gather(anchors)
        candidate_keys = gather_no_grad(keys)
        logits = anchors @ candidates.T / temperature
        rows = torch.arange(len(anchors), device=anchors.device)
        columns = torch.arange(len(candidates), device=anchors.device)
        is_self = columns == (rank() * len(anchors) + rows).unsqueeze(1)
        log_probs = F.log_softmax(logits.masked_fill(is_self, float("-inf")), dim=1)
        positive = (keys.unsqueeze(1) == candidate_keys.unsqueeze(0)) & ~is_self
        per_anchor = log_probs.masked_fill(~positive, 0).sum(dim=1) / positive.sum(dim=1)
        return -per_anchor.mean()
