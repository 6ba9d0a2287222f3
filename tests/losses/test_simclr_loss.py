import math

import torch
from ddp import run_distributed

from rotaux.losses.simclr import nt_xent_loss


def _naive_nt_xent(z_1: torch.Tensor, z_2: torch.Tensor, temperature: float) -> float:
    z = [vector / vector.norm() for vector in torch.cat([z_1, z_2]).double()]
    count, total = len(z), 0.0
    for i in range(count):
        positive = (i + count // 2) % count
        similarity = [float(z[i] @ z[k]) / temperature for k in range(count)]
        denominator = sum(math.exp(similarity[k]) for k in range(count) if k != i)
        total -= similarity[positive] - math.log(denominator)
    return total / count


def test_nt_xent_of_orthogonal_pairs_matches_hand_computed_value():
    # each anchor: cosine 1 with its positive, 0 with the two negatives
    z = torch.eye(2)
    assert math.isclose(
        nt_xent_loss(z, z, temperature=1.0).item(), math.log(1 + 2 / math.e), rel_tol=1e-6
    )
    assert math.isclose(
        nt_xent_loss(3 * z, z, temperature=0.5).item(), math.log(1 + 2 * math.exp(-2)), rel_tol=1e-6
    )


def test_nt_xent_matches_naive_loop():
    torch.manual_seed(0)
    z_1, z_2 = torch.randn(5, 4), torch.randn(5, 4)
    expected = _naive_nt_xent(z_1, z_2, temperature=0.2)
    assert math.isclose(nt_xent_loss(z_1, z_2, temperature=0.2).item(), expected, rel_tol=1e-5)


def test_nt_xent_stays_float32_under_bf16_autocast():
    torch.manual_seed(0)
    z_1, z_2 = torch.randn(16, 64), torch.randn(16, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = nt_xent_loss(z_1, z_2)
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, nt_xent_loss(z_1, z_2))


def _loss_and_grads(rank: int, world_size: int, z_1: torch.Tensor, z_2: torch.Tensor) -> tuple:
    local_1 = z_1.chunk(world_size)[rank].clone().requires_grad_(True)
    local_2 = z_2.chunk(world_size)[rank].clone().requires_grad_(True)
    loss = nt_xent_loss(local_1, local_2)
    loss.backward()
    return loss.detach(), local_1.grad, local_2.grad


def test_nt_xent_under_ddp_matches_one_process_with_the_whole_batch():
    torch.manual_seed(0)
    z_1, z_2 = torch.randn(8, 6), torch.randn(8, 6)
    expected_loss, expected_1, expected_2 = _loss_and_grads(0, 1, z_1, z_2)
    results = run_distributed(_loss_and_grads, z_1, z_2)
    # each rank averages over its own anchors; DDP averages the gradients over the 2 ranks
    torch.testing.assert_close(sum(loss for loss, _, _ in results) / 2, expected_loss)
    torch.testing.assert_close(torch.cat([grad / 2 for _, grad, _ in results]), expected_1)
    torch.testing.assert_close(torch.cat([grad / 2 for _, _, grad in results]), expected_2)
