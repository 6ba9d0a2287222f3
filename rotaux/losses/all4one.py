"""All4One's objectives (Estepa et al., "All4One: Symbiotic Neighbour Contrastive Learning via
Self-Attention and Redundancy Reduction", ICCV 2023, Sec. 3): the neighbour contrast is NNCLR's
(:func:`~rotaux.losses.nnclr.nnclr_loss`); this module adds the neighbour sets that the centroid
contrast summarises, the contrast between those summaries, and the feature contrast (redundancy
reduction between the feature columns of the two views)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from rotaux.distributed import all_reduce_sum, gather, rank


@torch.no_grad()
def nearest_neighbour_sets(
    embeddings: torch.Tensor, support: torch.Tensor, num_neighbours: int
) -> torch.Tensor:
    """``(B, num_neighbours, D)``: for each row of ``embeddings`` the L2-normalised rows of
    ``support`` with the highest cosine similarity, most similar first (slot 0 is NNCLR's
    nearest neighbour). Float32, without gradient."""
    embeddings = F.normalize(embeddings.float(), dim=-1)
    support = F.normalize(support.float(), dim=-1)
    return support[(embeddings @ support.T).topk(num_neighbours, dim=1).indices]


def neighbour_slot_encoding(num_slots: int, dim: int) -> torch.Tensor:
    """``(num_slots, dim)`` fixed offsets added to a sequence of ``num_slots`` embeddings of
    width ``dim`` so the transformer knows each embedding's rank.

    This is the encoding of the official All4One code (``positional_encodings``'
    ``PositionalEncodingPermute1D(num_slots)``): the sinusoids of Vaswani et al. (2017) run along
    the feature axis and each slot is one channel, alternately sine and cosine of the frequencies
    ``10000 ** (-2i / C)`` with ``C`` the slot count rounded up to even: slot ``2i`` holds
    ``sin(d * w_i)`` and slot ``2i + 1`` holds ``cos(d * w_i)`` at feature ``d``.
    """
    channels = 2 * math.ceil(num_slots / 2)
    slots = torch.arange(num_slots)
    frequencies = 10000.0 ** (-(2 * (slots // 2)).double() / channels)
    angles = torch.arange(dim).double()[None, :] * frequencies[:, None]
    encoding = torch.where((slots % 2 == 0)[:, None], angles.sin(), angles.cos())
    return encoding.float()


def centroid_contrast_loss(
    anchors: torch.Tensor, candidates: torch.Tensor, temperature: float = 0.1
) -> torch.Tensor:
    """NT-Xent between centroids: ``anchors[i]`` (this rank's) must pick ``candidates[i]`` among
    the candidates of the global batch, mean over this rank's anchors of
    ``-log exp(a_i.c_i/t) / sum_k exp(a_i.c_k/t)`` with cosine similarities in float32.

    Unlike :func:`~rotaux.losses.nnclr.nnclr_loss` both sides get gradient (both are transformer
    outputs, as in the official code). Candidates are gathered from all ranks with gradient, so
    after DDP averages the parameter gradients training matches one process holding the whole
    batch. The default temperature 0.1 is the official code's for this term.
    """
    anchors = F.normalize(anchors.float(), dim=-1)
    candidates = gather(F.normalize(candidates.float(), dim=-1))
    logits = anchors @ candidates.T / temperature
    targets = torch.arange(len(anchors), device=anchors.device) + rank() * len(anchors)
    return F.cross_entropy(logits, targets)


def _column_normalized(embeddings: torch.Tensor) -> torch.Tensor:
    """Each column divided by its L2 norm over the global batch (``F.normalize(x, dim=0)`` of
    the gathered batch, with the same 1e-12 floor), without gathering the rows."""
    squares = all_reduce_sum(embeddings.pow(2).sum(dim=0, keepdim=True))
    return embeddings / squares.sqrt().clamp_min(1e-12)


def _cross_correlation(targets: torch.Tensor, online: torch.Tensor) -> torch.Tensor:
    """``(D, D)`` cosine similarities between the feature columns of the two views over the
    global batch; every rank gets the same matrix, with gradient to ``online``."""
    return all_reduce_sum(_column_normalized(targets).T @ _column_normalized(online))


def feature_contrast_loss(
    targets_1: torch.Tensor,
    online_1: torch.Tensor,
    targets_2: torch.Tensor,
    online_2: torch.Tensor,
) -> torch.Tensor:
    """All4One's feature contrast: ``(on + off) / 2`` where, over the two cross-view matrices
    ``C_12 = corr(targets_1, online_2)`` and ``C_21 = corr(targets_2, online_1)`` of cosine
    similarities between feature columns (each column L2-normalised over the batch),
    ``on = sqrt(mean over both matrices of mean_i (C_ii - 1)^2)`` and
    ``off = sqrt(mean over both matrices of mean_{i != j} C_ij^2)``.

    ``targets_v`` are the momentum encoder's projections (no gradient), ``online_v`` the online
    projections. The column norms and the matrices are sums over the global batch, all-reduced
    with gradient: every rank computes the same loss and, after DDP averages the gradients, they
    equal those of one process with the whole batch. The official code weights this term by
    ``0.5 * 10``. Computed in float32 with autocast off.
    """
    with torch.autocast(online_1.device.type, enabled=False):
        matrices = torch.stack(
            [
                _cross_correlation(targets_1.detach().float(), online_2.float()),
                _cross_correlation(targets_2.detach().float(), online_1.float()),
            ]
        )
        dim = matrices.shape[-1]
        diagonal = torch.diagonal(matrices, dim1=-2, dim2=-1)
        off_diagonal = matrices.masked_select(
            ~torch.eye(dim, dtype=torch.bool, device=matrices.device)
        )
        on = (diagonal - 1).pow(2).mean().sqrt()
        off = off_diagonal.pow(2).mean().sqrt()
        return (on + off) / 2
