import torch
from ddp import run_distributed

from rotaux.distributed import all_reduce_sum, gather


def _gather_grad(rank: int, world_size: int, full: torch.Tensor) -> tuple:
    local = full.chunk(world_size)[rank].clone().requires_grad_(True)
    gathered = gather(local)
    # a loss over the global batch whose gradient differs per sample
    weights = torch.arange(1.0, len(full) + 1).unsqueeze(1)
    loss = (gathered * weights).pow(2).sum()
    loss.backward()
    return gathered.detach(), local.grad


def _reduce_grad(rank: int, world_size: int, full: torch.Tensor) -> torch.Tensor:
    local = full.chunk(world_size)[rank].clone().requires_grad_(True)
    total = all_reduce_sum(local.sum(dim=0))
    total.pow(2).sum().backward()
    return local.grad


def test_gather_concatenates_in_rank_order_and_routes_gradients():
    full = torch.randn(4, 3)
    results = run_distributed(_gather_grad, full)
    weights = torch.arange(1.0, 5).unsqueeze(1)
    expected_grad = 2 * full * weights**2  # d/dx of sum((w x)^2) on one process
    for rank, (gathered, grad) in enumerate(results):
        torch.testing.assert_close(gathered, full)
        # every rank computed the same global loss; DDP divides parameter gradients by 2
        torch.testing.assert_close(grad / 2, expected_grad.chunk(2)[rank])


def test_all_reduce_sum_gradient_matches_single_process_after_ddp_averaging():
    full = torch.randn(6, 2)
    results = run_distributed(_reduce_grad, full)
    # single process: loss = ||sum_i x_i||^2, grad = 2 * sum_i x_i for every row
    expected = (2 * full.sum(dim=0)).expand_as(full)
    # DDP averages parameter gradients over the 2 ranks
    ddp_grads = torch.cat([grad / 2 for grad in results])
    torch.testing.assert_close(ddp_grads, expected)
