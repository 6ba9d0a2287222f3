import math

import torch
from ddp import run_distributed

from rotaux.losses.vibcreg import vibcreg_loss
from rotaux.methods.vibcreg import IterNorm


def _naive_vibcreg(z_1: torch.Tensor, z_2: torch.Tensor) -> float:
    count, dim = z_1.shape
    invariance = sum(
        (float(z_1[b, j]) - float(z_2[b, j])) ** 2 for b in range(count) for j in range(dim)
    ) / (count * dim)

    def variance_and_covariance(z: torch.Tensor) -> tuple[float, float]:
        columns = [[float(z[b, j]) for b in range(count)] for j in range(dim)]
        centred = [[x - sum(column) / count for x in column] for column in columns]
        norms = [math.sqrt(sum(x * x for x in column)) for column in centred]
        variance = sum(max(0.0, 1 - math.sqrt(n * n / (count - 1) + 1e-4)) for n in norms) / dim

        def correlation(i: int, j: int) -> float:
            dot = sum(a * b for a, b in zip(centred[i], centred[j], strict=True))
            return dot / (norms[i] * norms[j])

        pairs = [(i, j) for i in range(dim) for j in range(dim) if i != j]
        return variance, sum(correlation(i, j) ** 2 for i, j in pairs) / dim**2

    variance_1, covariance_1 = variance_and_covariance(z_1)
    variance_2, covariance_2 = variance_and_covariance(z_2)
    return 25 * invariance + 25 * (variance_1 + variance_2) + 200 * (covariance_1 + covariance_2)


def test_vibcreg_loss_of_collapsed_embeddings_is_the_variance_penalty():
    z = torch.ones(4, 3)
    # std sqrt(eps) = 0.01 in every dimension; the centred columns are 0, so no correlation
    assert math.isclose(vibcreg_loss(z, z).item(), 25 * 2 * 0.99, rel_tol=1e-6)


def test_vibcreg_loss_of_perfectly_correlated_dimensions_matches_hand_computed_value():
    # centred columns [-1, 1] and [-1, 1]: correlation 1, variances 2 (std above 1)
    z = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    # c(Z) = 2 off-diagonal entries of 1 / D^2 = 0.5 per view
    assert math.isclose(vibcreg_loss(z, z).item(), 200 * (0.5 + 0.5), rel_tol=1e-6)


def test_vibcreg_covariance_term_does_not_depend_on_the_scale():
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(16, 4, generator=generator)
    only_covariance = {"invariance_weight": 0.0, "variance_weight": 0.0}
    small = vibcreg_loss(z, z, **only_covariance)
    torch.testing.assert_close(vibcreg_loss(5 * z - 2, 5 * z - 2, **only_covariance), small)
    assert small > 0


def test_vibcreg_loss_matches_naive_loop():
    generator = torch.Generator().manual_seed(1)
    z_1 = 0.5 * torch.randn(6, 4, generator=generator)
    z_2 = 2 * torch.randn(6, 4, generator=generator) + 1
    assert math.isclose(vibcreg_loss(z_1, z_2).item(), _naive_vibcreg(z_1, z_2), rel_tol=1e-5)


def test_vibcreg_loss_stays_float32_under_bf16_autocast():
    generator = torch.Generator().manual_seed(2)
    z_1, z_2 = torch.randn(16, 32, generator=generator), torch.randn(16, 32, generator=generator)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = vibcreg_loss(z_1, z_2)
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, vibcreg_loss(z_1, z_2))


def _on_rank(rank: int, world_size: int, z_1, z_2, features) -> dict:
    """VIbCReg's loss and a training-mode IterNorm on this rank's share of the batch."""
    local_1 = z_1.chunk(world_size)[rank].clone().requires_grad_(True)
    local_2 = z_2.chunk(world_size)[rank].clone().requires_grad_(True)
    loss = vibcreg_loss(local_1, local_2)
    loss.backward()
    norm = IterNorm(6, num_groups=2)
    local_features = features.chunk(world_size)[rank].clone().requires_grad_(True)
    output = norm(local_features)
    # a loss that weighs the samples unequally, summed over the ranks by DDP's averaging
    weights = torch.arange(1.0, len(features) + 1).chunk(world_size)[rank].unsqueeze(1)
    (output.pow(2) * weights).sum().backward()
    return {
        "loss": (loss.detach(), local_1.grad, local_2.grad),
        "iternorm": (output.detach(), local_features.grad, norm.weight.grad, norm.state_dict()),
    }


def test_vibcreg_loss_and_iternorm_under_ddp_use_the_global_batch():
    generator = torch.Generator().manual_seed(3)
    # the ranks' halves differ in mean and scale, so local statistics would give other values
    z_1 = torch.cat(
        [
            0.5 * torch.randn(4, 5, generator=generator),
            2 * torch.randn(4, 5, generator=generator) + 1,
        ]
    )
    z_2 = torch.cat(
        [torch.randn(4, 5, generator=generator) - 1, 0.8 * torch.randn(4, 5, generator=generator)]
    )
    features = torch.cat(
        [torch.randn(6, 6, generator=generator), 3 * torch.randn(6, 6, generator=generator) - 2]
    )
    expected = _on_rank(0, 1, z_1, z_2, features)
    results = run_distributed(_on_rank, z_1, z_2, features)
    loss, grad_1, grad_2 = expected["loss"]
    for result in results:
        torch.testing.assert_close(result["loss"][0], loss)
    torch.testing.assert_close(torch.cat([r["loss"][1] / 2 for r in results]), grad_1)
    torch.testing.assert_close(torch.cat([r["loss"][2] / 2 for r in results]), grad_2)
    output, input_grad, weight_grad, state = expected["iternorm"]
    torch.testing.assert_close(torch.cat([r["iternorm"][0] for r in results]), output)
    # every rank's loss is the sum over its samples: DDP's average times 2 is the global sum
    torch.testing.assert_close(torch.cat([r["iternorm"][1] for r in results]), input_grad)
    torch.testing.assert_close(sum(r["iternorm"][2] for r in results), weight_grad)
    for result in results:
        for name, value in state.items():
            torch.testing.assert_close(result["iternorm"][3][name], value)
