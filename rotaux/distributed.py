"""Collectives for losses that mix samples across the global batch."""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def own_rows(rows: torch.Tensor, local_count: int) -> torch.Tensor:
    """This rank's ``local_count`` rows of ``rows`` drawn for the whole global batch (rank order):
    random draws made so equal those of one process holding the whole batch, although every
    rank's generator is seeded alike."""
    start = rank() * local_count
    return rows[start : start + local_count]


class _GatherWithGradient(torch.autograd.Function):
    """all_gather whose backward sums the incoming gradients over ranks and returns this rank's
    slice, so every sample's gradient is what a single process with the whole batch computes
    (given that DDP then averages parameter gradients over ranks, losses are means)."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:  # noqa: ANN001 - autograd signature
        gathered = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, tensor.contiguous())
        return torch.cat(gathered)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad.chunk(dist.get_world_size())[dist.get_rank()]


def gather(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` (same shape on every rank) from all ranks along dim 0, in rank
    order, with gradients flowing back to each rank's own slice. Identity without DDP."""
    if not is_distributed():
        return tensor
    return _GatherWithGradient.apply(tensor)


@torch.no_grad()
def gather_no_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` from all ranks along dim 0 without autograd (queues, banks)."""
    if not is_distributed():
        return tensor
    gathered = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, tensor.contiguous())
    return torch.cat(gathered)


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum of ``tensor`` over ranks, with gradient (the backward pass sums gradients too).

    A loss that every rank computes identically from reduced statistics (Barlow Twins'
    cross-correlation, VICReg's covariance) then gets, after DDP averages parameter gradients,
    exactly the gradient of one process holding the whole batch."""
    if not is_distributed():
        return tensor
    return torch.distributed.nn.functional.all_reduce(tensor)
