import math

import pytest
import torch
from ddp import run_distributed

from rotaux.losses.mocov3 import mocov3_loss


def _naive(query: torch.Tensor, key: torch.Tensor, temperature: float) -> float:
    """The paper's Algorithm 1, one query at a time in float64."""
    query = torch.nn.functional.normalize(query.double(), dim=1)
    key = torch.nn.functional.normalize(key.double(), dim=1)
    total = 0.0
    for index, row in enumerate(query):
        logits = [float(row @ other) / temperature for other in key]
        total += -logits[index] + math.log(sum(math.exp(logit) for logit in logits))
    return 2 * temperature * total / len(query)


def test_two_orthogonal_pairs_by_hand():
    # q_i . k_i = 1 and q_i . k_j = 0: CE = log(1 + e^(-1/t)); times 2t
    query = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    key = torch.tensor([[5.0, 0.0], [0.0, 1.0]])
    expected = 2 * 0.5 * math.log(1 + math.exp(-2.0))
    assert mocov3_loss(query, key, 0.5).item() == pytest.approx(expected, rel=1e-6)


def test_matches_the_naive_loop_and_leaves_keys_without_gradient():
    generator = torch.Generator().manual_seed(0)
    query = torch.randn(6, 5, generator=generator, requires_grad=True)
    key = torch.randn(6, 5, generator=generator, requires_grad=True)
    loss = mocov3_loss(query, key, 0.2)
    assert loss.item() == pytest.approx(_naive(query.detach(), key.detach(), 0.2), rel=1e-5)
    loss.backward()
    assert query.grad is not None and query.grad.abs().sum() > 0
    assert key.grad is None


def _ranked(rank: int, world_size: int, query: torch.Tensor, key: torch.Tensor) -> tuple:
    local_query = query.chunk(world_size)[rank].clone().requires_grad_(True)
    loss = mocov3_loss(local_query, key.chunk(world_size)[rank], 0.2)
    loss.backward()
    return loss.item(), local_query.grad


def test_two_processes_equal_one_process_with_the_whole_batch():
    generator = torch.Generator().manual_seed(1)
    query = torch.randn(8, 4, generator=generator)
    key = torch.randn(8, 4, generator=generator)
    whole = query.clone().requires_grad_(True)
    loss = mocov3_loss(whole, key, 0.2)
    loss.backward()
    ranks = run_distributed(_ranked, query, key)
    # DDP averages the ranks' gradients; each rank's loss is the mean over its queries
    assert sum(result[0] for result in ranks) / 2 == pytest.approx(loss.item(), rel=1e-6)
    torch.testing.assert_close(torch.cat([result[1] for result in ranks]) / 2, whole.grad)
