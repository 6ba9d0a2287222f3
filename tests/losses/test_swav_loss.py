import math

import torch
from ddp import run_distributed

from rotaux.losses.swav import sinkhorn, swav_loss


def _naive_sinkhorn(scores: torch.Tensor, num_iters: int, epsilon: float) -> list[list[float]]:
    """The official code's K x B formulation, entry by entry in float64."""
    count, num_prototypes = scores.shape
    q = [
        [math.exp(float(scores[b, k]) / epsilon) for b in range(count)]
        for k in range(num_prototypes)
    ]
    total = sum(map(sum, q))
    q = [[x / total for x in row] for row in q]
    for _ in range(num_iters):
        q = [[x / sum(row) / num_prototypes for x in row] for row in q]
        column_sums = [sum(q[k][b] for k in range(num_prototypes)) for b in range(count)]
        q = [
            [q[k][b] / column_sums[b] / count for b in range(count)] for k in range(num_prototypes)
        ]
    return [[q[k][b] * count for k in range(num_prototypes)] for b in range(count)]


def test_sinkhorn_matches_the_official_algorithm_computed_naively():
    scores = torch.randn(5, 3, generator=torch.Generator().manual_seed(0)).tanh()
    expected = torch.tensor(_naive_sinkhorn(scores, 3, 0.05))
    torch.testing.assert_close(sinkhorn(scores, 3, 0.05), expected)


def test_sinkhorn_stays_finite_where_exp_of_the_scores_overflows_float32():
    # exp(9.5 / 0.05) = exp(190) is beyond float32; the result only depends on score differences
    scores = 9.0 + torch.rand(4, 3, generator=torch.Generator().manual_seed(1))
    codes = sinkhorn(scores, 3, 0.05)
    torch.testing.assert_close(codes, torch.tensor(_naive_sinkhorn(scores, 3, 0.05)))


def test_sinkhorn_codes_have_unit_rows_and_converge_to_equal_prototype_mass():
    scores = torch.randn(12, 4, generator=torch.Generator().manual_seed(2)).tanh()
    codes = sinkhorn(scores, num_iters=3, epsilon=0.05)
    torch.testing.assert_close(codes.sum(dim=1), torch.ones(12))
    converged = sinkhorn(scores, num_iters=500, epsilon=0.5)
    torch.testing.assert_close(converged.sum(dim=1), torch.ones(12))
    torch.testing.assert_close(converged.sum(dim=0), torch.full((4,), 3.0), atol=1e-4, rtol=0)


def test_swav_loss_of_uniform_scores_is_log_num_prototypes():
    # every prediction is uniform over 4 prototypes, so each cross-entropy is log 4
    scores = [torch.zeros(2, 4) for _ in range(3)]
    codes = [torch.tensor([[1.0, 0, 0, 0], [0, 0.5, 0.5, 0]])] * 2
    assert math.isclose(swav_loss(scores, codes, 0.1).item(), math.log(4), rel_tol=1e-6)


def _naive_swav(scores: list, codes: list, temperature: float) -> float:
    total = 0.0
    for i, code in enumerate(codes):
        terms = []
        for v, score in enumerate(scores):
            if v == i:
                continue
            ce = 0.0
            for b in range(len(score)):
                logits = [float(x) / temperature for x in score[b]]
                log_z = math.log(sum(math.exp(x) for x in logits))
                ce -= sum(float(c) * (x - log_z) for c, x in zip(code[b], logits, strict=True))
            terms.append(ce / len(score))
        total += sum(terms) / len(terms)
    return total / len(codes)


def test_swav_loss_with_multi_crop_matches_naive_loop_and_codes_get_no_gradient():
    generator = torch.Generator().manual_seed(3)
    scores = [torch.randn(3, 4, generator=generator, requires_grad=True) for _ in range(4)]
    codes = [torch.rand(3, 4, generator=generator, requires_grad=True) for _ in range(2)]
    loss = swav_loss(scores, codes, 0.1)
    detached = [s.detach() for s in scores], [c.detach() for c in codes]
    assert math.isclose(loss.item(), _naive_swav(*detached, 0.1), rel_tol=1e-5)
    loss.backward()
    assert all(code.grad is None for code in codes)
    assert all(score.grad.abs().sum() > 0 for score in scores)


def _swav_step(scores: list, queue: torch.Tensor, rank: int = 0, world_size: int = 1) -> tuple:
    """Codes of the 2 large crops (with this rank's share of the queue's scores) and the loss."""
    local = [s.chunk(world_size)[rank].clone().requires_grad_(True) for s in scores]
    queue_share = queue.tensor_split(world_size)[rank]
    codes = [sinkhorn(torch.cat([local[i], queue_share]))[: len(local[i])] for i in range(2)]
    loss = swav_loss(local, codes, 0.1)
    loss.backward()
    return loss.detach(), torch.cat(codes), torch.cat([s.grad for s in local])


def _swav_on_rank(rank: int, world_size: int, scores: list, queue: torch.Tensor) -> tuple:
    return _swav_step(scores, queue, rank, world_size)


def test_swav_on_two_ranks_matches_one_process_with_the_whole_batch_and_queue():
    generator = torch.Generator().manual_seed(4)
    scores = [torch.randn(8, 5, generator=generator).tanh() for _ in range(3)]
    queue = torch.randn(6, 5, generator=generator).tanh()
    results = run_distributed(_swav_on_rank, scores, queue)
    loss, codes, grads = _swav_step(scores, queue)
    torch.testing.assert_close(torch.stack([r[0] for r in results]).mean(), loss)
    # each rank returns [crop 0 codes; crop 1 codes] for its half of the batch
    for crop in range(2):
        ranks_codes = torch.cat([r[1].chunk(2)[crop] for r in results])
        torch.testing.assert_close(ranks_codes, codes.chunk(2)[crop])
    for crop in range(3):
        ranks_grads = torch.cat([r[2].chunk(3)[crop] / 2 for r in results])
        torch.testing.assert_close(ranks_grads, grads.chunk(3)[crop])
