"""DeepCluster-v2's targets and loss (Caron et al., "Unsupervised Learning of Visual Features by
Contrasting Cluster Assignments", NeurIPS 2020, Sec. 4 and Appendix A: DeepCluster-v2 is
DeepCluster with spherical k-means on a memory bank of embeddings and explicit prototypes)."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from rotaux.distributed import all_reduce_sum, gather_no_grad, is_distributed, rank, world_size
from rotaux.errors import RotauxError


def _share_bounds(count: int, ranks: int) -> list[int]:
    """Where each rank's share of ``count`` rows starts (``tensor_split`` order), then ``count``."""
    base, extra = divmod(count, ranks)
    bounds = [0]
    for share in range(ranks):
        bounds.append(bounds[-1] + base + (1 if share < extra else 0))
    return bounds


def _nearest(rows: torch.Tensor, centroids: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """Index of the centroid of highest cosine similarity for each row, by chunks of rows."""
    if len(rows) == 0:
        return torch.zeros(0, dtype=torch.long, device=rows.device)
    return torch.cat([(chunk @ centroids.T).argmax(dim=1) for chunk in rows.split(chunk_size)])


@torch.no_grad()
def spherical_kmeans(
    embeddings: torch.Tensor,
    num_clusters: int,
    num_iters: int,
    generator: torch.Generator,
    chunk_size: int = 4096,
) -> tuple[torch.Tensor, torch.Tensor]:
    """k-means on the unit sphere of the unit-norm ``(N, D)`` ``embeddings`` (every rank must
    hold the same rows, as DeepCluster-v2's memory bank does here). Returns the ``(K, D)``
    unit-norm centroids and the ``(N,)`` cluster of each row.

    The centroids start at ``num_clusters`` distinct rows drawn with the CPU ``generator``. Each
    of ``num_iters`` iterations assigns every row to its centroid of highest cosine similarity
    and moves every centroid that got rows to the L2-normalised mean of its rows (a centroid
    without rows stays); a final assignment step gives the clusters. This is the official code's
    ``cluster_memory`` (10 iterations by default there and in solo-learn).

    Under DDP each rank assigns its share of the rows and the per-cluster sums and counts are
    all-reduced, so every rank gets the same centroids; the shares' assignments are gathered, so
    every rank returns what one process with all rows returns. Rows are processed in chunks of
    ``chunk_size``, and the sums are one-hot products (deterministic on GPUs, unlike
    scatter-adds). Computed in float32.
    """
    count, dim = embeddings.shape
    if num_clusters > count:
        raise RotauxError(
            f"k-means cannot make {num_clusters} clusters of {count} embeddings: lower "
            "--model.num_prototypes below the number of training images."
        )
    embeddings = embeddings.float()
    start = torch.randperm(count, generator=generator)[:num_clusters]
    centroids = embeddings[start.to(embeddings.device)]
    bounds = _share_bounds(count, world_size())
    share = embeddings[bounds[rank()] : bounds[rank() + 1]]
    for _ in range(num_iters):
        sums = embeddings.new_zeros(num_clusters, dim)
        counts = embeddings.new_zeros(num_clusters)
        for chunk in share.split(chunk_size):
            one_hot = F.one_hot(_nearest(chunk, centroids, chunk_size), num_clusters).float()
            sums += one_hot.T @ chunk
            counts += one_hot.sum(dim=0)
        sums, counts = all_reduce_sum(sums), all_reduce_sum(counts)
        means = sums / counts.clamp(min=1).unsqueeze(1)
        centroids = F.normalize(torch.where((counts > 0).unsqueeze(1), means, centroids), dim=1)
    return centroids, _gather_shares(_nearest(share, centroids, chunk_size), bounds)


def _gather_shares(local: torch.Tensor, bounds: list[int]) -> torch.Tensor:
    """The ranks' shares of a split like :func:`_share_bounds`', concatenated in rank order."""
    if not is_distributed():
        return local
    longest = max(end - begin for begin, end in zip(bounds[:-1], bounds[1:], strict=True))
    padded = local.new_full((longest,), -1)
    padded[: len(local)] = local
    gathered = gather_no_grad(padded).view(dist.get_world_size(), longest)
    return torch.cat(
        [
            gathered[share, : end - begin]
            for share, (begin, end) in enumerate(zip(bounds[:-1], bounds[1:], strict=True))
        ]
    )


def deepclusterv2_loss(
    scores: torch.Tensor, assignments: torch.Tensor, temperature: float = 0.1
) -> torch.Tensor:
    """Cross-entropy between every crop's prototype scores and its sample's k-means cluster,
    averaged over the prototype sets (the official ``main_deepclusterv2.py`` loss).

    ``scores`` are the ``(H, V, B, K)`` cosine similarities of the embeddings of ``V`` crops of
    ``B`` samples with the ``K`` centroids of each of ``H`` prototype sets; ``assignments`` are
    the ``(H, B)`` clusters of the samples in each set, ``-1`` for a sample without one (not yet
    in the memory bank), which is left out as the official code's ``ignore_index`` does. For
    each set the loss is ``-log softmax(scores / temperature)`` at the assigned cluster, averaged
    over the crops and the assigned samples of the global batch; with no assigned sample it is 0
    (with a gradient of zeros). Under DDP the number of assigned samples is all-reduced and each
    rank's value is scaled so that the mean over ranks is the global loss and DDP's averaged
    gradient that of one process with the whole batch. Computed in float32 with autocast off.
    """
    with torch.autocast(scores.device.type, enabled=False):
        log_probs = F.log_softmax(scores.float() / temperature, dim=-1)
        num_sets, num_crops, batch_size, _ = log_probs.shape
        assigned = assignments >= 0
        targets = assignments.clamp(min=0).view(num_sets, 1, batch_size, 1)
        picked = log_probs.gather(-1, targets.expand(num_sets, num_crops, batch_size, 1))
        masked = picked.squeeze(-1) * assigned.unsqueeze(1)
        count = all_reduce_sum(assigned.sum(dim=1).float()).clamp(min=1)
        per_set = -masked.sum(dim=(1, 2)) * world_size() / (num_crops * count)
        return per_set.mean()
