"""SwAV's swapped prediction loss and its Sinkhorn-Knopp codes (Caron et al., "Unsupervised
Learning of Visual Features by Contrasting Cluster Assignments", NeurIPS 2020, Eqs. 1-3)."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from rotaux.distributed import all_reduce_sum, is_distributed


@torch.no_grad()
def sinkhorn(scores: torch.Tensor, num_iters: int = 3, epsilon: float = 0.05) -> torch.Tensor:
    """Soft codes ``Q`` (``(N, K)``, each row sums to 1) for prototype ``scores`` (``(N, K)``).

    Starts from ``exp(scores / epsilon)`` and alternates ``num_iters`` times between giving every
    prototype the same total mass and giving every sample mass 1 (Sec. 3.1 and Algorithm 1 of
    the paper; 3 iterations and ``epsilon=0.05`` are its defaults). Under DDP the prototype
    totals are summed over all ranks, as in the official code, so the codes of each rank's rows
    are those of one Sinkhorn run over the global set of rows. Computed in float32; the scores
    are shifted by their global maximum first, which leaves the result unchanged and keeps the
    exponential finite.
    """
    scores = scores.float()
    shift = scores.max()
    if is_distributed():
        dist.all_reduce(shift, op=dist.ReduceOp.MAX)
    codes = torch.exp((scores - shift) / epsilon)
    num_prototypes = codes.shape[1]
    for _ in range(num_iters):
        codes /= all_reduce_sum(codes.sum(dim=0, keepdim=True)) * num_prototypes
        codes /= codes.sum(dim=1, keepdim=True)
    return codes


def swav_loss(
    scores: list[torch.Tensor], codes: list[torch.Tensor], temperature: float
) -> torch.Tensor:
    """Swapped prediction over any number of crops (Eq. 1 with multi-crop, Sec. 3.2).

    ``scores[v]`` are the prototype scores of crop ``v`` (``(B, K)``, large crops first) and
    ``codes[i]`` the Sinkhorn codes of the ``i``-th large crop (no gradient). Each code is
    predicted from every other crop with cross-entropy against ``softmax(scores / temperature)``;
    the loss averages over the other crops and then over the coded crops, as the official
    implementation does. Computed in float32.
    """
    log_probs = [F.log_softmax(score.float() / temperature, dim=-1) for score in scores]
    loss = scores[0].new_zeros((), dtype=torch.float32)
    for coded, code in enumerate(codes):
        code = code.detach().float()
        cross_entropies = [
            -(code * log_prob).sum(dim=-1).mean()
            for view, log_prob in enumerate(log_probs)
            if view != coded
        ]
        loss = loss + torch.stack(cross_entropies).mean()
    return loss / len(codes)
