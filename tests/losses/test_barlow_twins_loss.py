import math

import torch
from ddp import run_distributed

from rotaux.losses.barlow_twins import barlow_twins_loss


def _naive_barlow_twins(z_1: torch.Tensor, z_2: torch.Tensor, lambd: float, scale: float) -> float:
    count, dim = z_1.shape

    def standardized(z: torch.Tensor) -> list[list[float]]:
        columns = []
        for j in range(dim):
            mean = sum(float(z[b, j]) for b in range(count)) / count
            variance = sum((float(z[b, j]) - mean) ** 2 for b in range(count)) / count
            columns.append(
                [(float(z[b, j]) - mean) / math.sqrt(variance + 1e-5) for b in range(count)]
            )
        return columns

    a, b = standardized(z_1), standardized(z_2)
    loss = 0.0
    for i in range(dim):
        for j in range(dim):
            correlation = sum(a[i][n] * b[j][n] for n in range(count)) / count
            loss += (1 - correlation) ** 2 if i == j else lambd * correlation**2
    return scale * loss


def test_barlow_twins_loss_of_anticorrelated_dimensions_matches_hand_computed_value():
    # both dimensions standardise to +-1 and are perfectly anti-correlated: C = [[c, -c], [-c, c]]
    z = torch.tensor([[1.0, 2.0], [3.0, 0.0]])
    c = 1 / (1 + 1e-5)
    expected = 2 * (1 - c) ** 2 + 0.5 * 2 * c**2
    loss = barlow_twins_loss(z, z, lambd=0.5, scale=1.0)
    assert math.isclose(loss.item(), expected, rel_tol=1e-6)


def test_barlow_twins_loss_matches_naive_loop():
    torch.manual_seed(0)
    z_1, z_2 = torch.randn(6, 4) * 3 + 1, torch.randn(6, 4)
    expected = _naive_barlow_twins(z_1, z_2, lambd=0.0051, scale=0.1)
    assert math.isclose(barlow_twins_loss(z_1, z_2).item(), expected, rel_tol=1e-5)


def test_barlow_twins_loss_stays_float32_under_bf16_autocast():
    torch.manual_seed(0)
    z_1, z_2 = torch.randn(16, 64), torch.randn(16, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = barlow_twins_loss(z_1, z_2)
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, barlow_twins_loss(z_1, z_2))


def _loss_and_grads(rank: int, world_size: int, z_1: torch.Tensor, z_2: torch.Tensor) -> tuple:
    local_1 = z_1.chunk(world_size)[rank].clone().requires_grad_(True)
    local_2 = z_2.chunk(world_size)[rank].clone().requires_grad_(True)
    loss = barlow_twins_loss(local_1, local_2)
    loss.backward()
    return loss.detach(), local_1.grad, local_2.grad


def test_barlow_twins_loss_under_ddp_matches_one_process_with_the_whole_batch():
    torch.manual_seed(0)
    # the ranks' halves differ in mean and scale, so local statistics would give other values
    z_1 = torch.cat([torch.randn(4, 5), 3 * torch.randn(4, 5) + 2])
    z_2 = torch.cat([torch.randn(4, 5) - 1, torch.randn(4, 5)])
    expected_loss, expected_1, expected_2 = _loss_and_grads(0, 1, z_1, z_2)
    results = run_distributed(_loss_and_grads, z_1, z_2)
    for loss, _, _ in results:
        torch.testing.assert_close(loss, expected_loss)
    # DDP averages the gradients over the 2 ranks
    torch.testing.assert_close(torch.cat([grad / 2 for _, grad, _ in results]), expected_1)
    torch.testing.assert_close(torch.cat([grad / 2 for _, _, grad in results]), expected_2)
