import math

import pytest
import torch
from ddp import run_distributed

from rotaux.errors import RotauxError
from rotaux.losses.wmse import cholesky_whiten, wmse_loss


def _naive_whiten(rows: list[list[float]]) -> list[list[float]]:
    """Cholesky-Banachiewicz factor of the unbiased covariance and forward substitution, in
    float64 loops: returns L^-1 (x - mean) for every row."""
    count, dim = len(rows), len(rows[0])
    mean = [sum(row[j] for row in rows) / count for j in range(dim)]
    centred = [[row[j] - mean[j] for j in range(dim)] for row in rows]
    cov = [
        [sum(row[i] * row[j] for row in centred) / (count - 1) for j in range(dim)]
        for i in range(dim)
    ]
    factor = [[0.0] * dim for _ in range(dim)]
    for i in range(dim):
        for j in range(i + 1):
            partial = sum(factor[i][k] * factor[j][k] for k in range(j))
            if i == j:
                factor[i][j] = math.sqrt(cov[i][i] - partial)
            else:
                factor[i][j] = (cov[i][j] - partial) / factor[j][j]
    whitened = []
    for row in centred:
        solution = [0.0] * dim
        for i in range(dim):
            solution[i] = (row[i] - sum(factor[i][k] * solution[k] for k in range(i))) / factor[i][
                i
            ]
        whitened.append(solution)
    return whitened


def _naive_wmse(views: list[torch.Tensor], order: list[int], whitening_size: int) -> float:
    count = len(order)
    groups = [order[start : start + whitening_size] for start in range(0, count, whitening_size)]
    whitened = [dict() for _ in views]
    for group in groups:
        for view, out in zip(views, whitened, strict=True):
            rows = _naive_whiten([[float(x) for x in view[i].double()] for i in group])
            out.update(zip(group, rows, strict=True))
    pairs = [(a, b) for a in range(len(views)) for b in range(a + 1, len(views))]
    total = 0.0
    for a, b in pairs:
        cosines = []
        for i in range(count):
            x, y = whitened[a][i], whitened[b][i]
            dot = sum(p * q for p, q in zip(x, y, strict=True))
            cosines.append(dot / math.sqrt(sum(p * p for p in x) * sum(q * q for q in y)))
        total += 2 - 2 * sum(cosines) / count
    return total / len(pairs)


def test_whitened_groups_have_zero_mean_and_identity_covariance_and_match_naive_loops():
    generator = torch.Generator().manual_seed(0)
    # correlated, shifted and scaled: far from white
    groups = torch.randn(2, 12, 3, generator=generator) @ torch.tensor(
        [[2.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0.0, 0.0, 0.2]]
    ) + torch.tensor([1.0, -3.0, 0.5])
    whitened = cholesky_whiten(groups)
    for group, out in zip(groups, whitened, strict=True):
        torch.testing.assert_close(out.mean(dim=0), torch.zeros(3), atol=1e-5, rtol=0)
        torch.testing.assert_close(out.T @ out / 11, torch.eye(3), atol=1e-4, rtol=0)
        expected = torch.tensor(_naive_whiten(group.double().tolist()), dtype=torch.float32)
        torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-4)


def test_a_group_with_no_more_samples_than_dimensions_gives_nan_not_an_exception():
    # 3 samples in 4 dimensions, the last one constant: the covariance is singular exactly (a
    # random 3 x 4 group is singular too, but float32 rounding can leave it barely positive)
    groups = torch.tensor([[[1.0, 2.0, 0.5, 7.0], [-1.0, 0.0, 2.0, 7.0], [0.5, 1.0, -1.0, 7.0]]])
    assert cholesky_whiten(groups).isnan().all()


def test_wmse_loss_matches_naive_loops_for_three_views_and_two_groups():
    generator = torch.Generator().manual_seed(1)
    views = [torch.randn(10, 3, generator=generator) for _ in range(3)]
    order = torch.randperm(10, generator=torch.Generator().manual_seed(5)).tolist()
    loss = wmse_loss(views, whitening_size=5, generator=torch.Generator().manual_seed(5))
    assert math.isclose(loss.item(), _naive_wmse(views, order, 5), rel_tol=1e-4)


def test_wmse_loss_averages_whitening_iterations_and_trains_both_views():
    generator = torch.Generator().manual_seed(2)
    views = [torch.randn(8, 2, generator=generator).requires_grad_(True) for _ in range(2)]
    loss = wmse_loss(views, 4, torch.Generator().manual_seed(3), whitening_iters=2)
    draws = torch.Generator().manual_seed(3)
    orders = [torch.randperm(8, generator=draws).tolist() for _ in range(2)]
    expected = sum(_naive_wmse([v.detach() for v in views], order, 4) for order in orders) / 2
    assert math.isclose(loss.item(), expected, rel_tol=1e-4)
    loss.backward()
    # no stop-gradient: the official norm_mse_loss trains through both views
    assert all(view.grad.abs().sum() > 0 for view in views)


def test_wmse_loss_refuses_a_whitening_size_that_does_not_divide_the_batch():
    with pytest.raises(RotauxError, match="whitening_size=3"):
        wmse_loss([torch.randn(8, 2), torch.randn(8, 2)], 3, torch.Generator())


def test_wmse_loss_stays_float32_under_bf16_autocast():
    generator = torch.Generator().manual_seed(4)
    views = [torch.randn(16, 4, generator=generator) for _ in range(2)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = wmse_loss(views, 8, torch.Generator().manual_seed(0))
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, wmse_loss(views, 8, torch.Generator().manual_seed(0)))


def _loss_and_grads(rank: int, world_size: int, views: list[torch.Tensor]) -> tuple:
    local = [view.chunk(world_size)[rank].clone().requires_grad_(True) for view in views]
    # groups of 8 out of 16: each group mixes the samples of both ranks
    loss = wmse_loss(local, 8, torch.Generator().manual_seed(6))
    loss.backward()
    return loss.detach(), [view.grad for view in local]


def test_wmse_loss_under_ddp_whitens_over_the_global_batch():
    generator = torch.Generator().manual_seed(7)
    # the ranks' halves differ in mean and scale, so local statistics would give other values
    views = [
        torch.cat(
            [torch.randn(8, 3, generator=generator), 3 * torch.randn(8, 3, generator=generator) + 2]
        )
        for _ in range(2)
    ]
    expected_loss, expected_grads = _loss_and_grads(0, 1, views)
    results = run_distributed(_loss_and_grads, views)
    # every rank computes the global loss; DDP averages the gradients over the 2 ranks
    for loss, _ in results:
        torch.testing.assert_close(loss, expected_loss)
    for view in range(2):
        ranks_grad = torch.cat([grads[view] / 2 for _, grads in results])
        torch.testing.assert_close(ranks_grad, expected_grads[view])
