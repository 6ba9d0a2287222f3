import math

import torch
from ddp import run_distributed

from rotaux.losses.vicreg import vicreg_loss


def _naive_vicreg(z_1: torch.Tensor, z_2: torch.Tensor) -> float:
    count, dim = z_1.shape
    invariance = sum(
        (float(z_1[b, j]) - float(z_2[b, j])) ** 2 for b in range(count) for j in range(dim)
    ) / (count * dim)

    def variance_and_covariance(z: torch.Tensor) -> tuple[float, float]:
        mean = [sum(float(z[b, j]) for b in range(count)) / count for j in range(dim)]

        def cov(i: int, j: int) -> float:
            return sum(
                (float(z[b, i]) - mean[i]) * (float(z[b, j]) - mean[j]) for b in range(count)
            ) / (count - 1)

        variance = sum(max(0.0, 1 - math.sqrt(cov(j, j) + 1e-4)) for j in range(dim)) / dim
        covariance = sum(cov(i, j) ** 2 for i in range(dim) for j in range(dim) if i != j) / dim
        return variance, covariance

    variance_1, covariance_1 = variance_and_covariance(z_1)
    variance_2, covariance_2 = variance_and_covariance(z_2)
    return 25 * invariance + 25 * (variance_1 + variance_2) + 1 * (covariance_1 + covariance_2)


def test_vicreg_loss_of_collapsed_embeddings_is_the_variance_penalty():
    z = torch.ones(4, 3)
    # no spread: every std is sqrt(eps) = 0.01, so v = 0.99 for each view
    assert math.isclose(vicreg_loss(z, z).item(), 25 * 2 * 0.99, rel_tol=1e-6)


def test_vicreg_loss_of_correlated_dimensions_matches_hand_computed_value():
    # centred rows [-1, 1] and [1, -1]: variances 2 (std above 1), covariance -2
    z = torch.tensor([[1.0, 2.0], [3.0, 0.0]])
    # c(Z) = 2 * (-2)^2 / 2 = 4 per view; invariance and variance terms are 0
    assert math.isclose(vicreg_loss(z, z).item(), 8.0, rel_tol=1e-6)


def test_vicreg_loss_matches_naive_loop():
    torch.manual_seed(0)
    z_1, z_2 = torch.randn(6, 4) * 0.5, torch.randn(6, 4) * 2 + 1
    assert math.isclose(vicreg_loss(z_1, z_2).item(), _naive_vicreg(z_1, z_2), rel_tol=1e-5)


def test_vicreg_loss_stays_float32_under_bf16_autocast():
    torch.manual_seed(0)
    z_1, z_2 = torch.randn(16, 64), torch.randn(16, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = vicreg_loss(z_1, z_2)
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, vicreg_loss(z_1, z_2))


def _loss_and_grads(rank: int, world_size: int, z_1: torch.Tensor, z_2: torch.Tensor) -> tuple:
    local_1 = z_1.chunk(world_size)[rank].clone().requires_grad_(True)
    local_2 = z_2.chunk(world_size)[rank].clone().requires_grad_(True)
    loss = vicreg_loss(local_1, local_2)
    loss.backward()
    return loss.detach(), local_1.grad, local_2.grad


def test_vicreg_loss_under_ddp_matches_one_process_with_the_whole_batch():
    torch.manual_seed(0)
    # the ranks' halves differ in mean and scale, so local statistics would give other values;
    # spreads around 1 keep some dimensions on each side of the variance hinge
    z_1 = torch.cat([0.5 * torch.randn(4, 5), 2 * torch.randn(4, 5) + 1])
    z_2 = torch.cat([torch.randn(4, 5) - 1, 0.8 * torch.randn(4, 5)])
    expected_loss, expected_1, expected_2 = _loss_and_grads(0, 1, z_1, z_2)
    results = run_distributed(_loss_and_grads, z_1, z_2)
    for loss, _, _ in results:
        torch.testing.assert_close(loss, expected_loss)
    # DDP averages the gradients over the 2 ranks
    torch.testing.assert_close(torch.cat([grad / 2 for _, grad, _ in results]), expected_1)
    torch.testing.assert_close(torch.cat([grad / 2 for _, _, grad in results]), expected_2)
