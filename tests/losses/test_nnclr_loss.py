import math

import torch
from ddp import run_distributed

from rotaux.losses.nnclr import nearest_neighbours, nnclr_loss


def _naive_nnclr(neighbours, predictions, temperature: float) -> float:
    def unit(row: torch.Tensor) -> list[float]:
        norm = math.sqrt(sum(float(x) ** 2 for x in row))
        return [float(x) / norm for x in row]

    nn_rows, p_rows = [unit(r) for r in neighbours], [unit(r) for r in predictions]
    total = 0.0
    for i, nn_row in enumerate(nn_rows):
        logits = [sum(a * b for a, b in zip(nn_row, p, strict=True)) / temperature for p in p_rows]
        total += -logits[i] + math.log(sum(math.exp(logit) for logit in logits))
    return total / len(nn_rows)


def test_nearest_neighbours_pick_the_support_row_of_highest_cosine():
    support = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [10.0, 9.0]])
    embeddings = torch.tensor([[0.1, 3.0], [-2.0, 0.1], [5.0, 4.0]])
    # the long row [10, 9] wins only by angle, not by its norm
    neighbours = nearest_neighbours(embeddings, support)
    expected = torch.nn.functional.normalize(support[[1, 2, 3]], dim=1)
    torch.testing.assert_close(neighbours, expected)


def test_nnclr_loss_matches_naive_loop_and_sends_no_gradient_to_the_neighbours():
    generator = torch.Generator().manual_seed(0)
    neighbours = torch.randn(5, 3, generator=generator, requires_grad=True)
    predictions = torch.randn(5, 3, generator=generator, requires_grad=True)
    loss = nnclr_loss(neighbours, predictions, 0.2)
    assert math.isclose(
        loss.item(), _naive_nnclr(neighbours.detach(), predictions.detach(), 0.2), rel_tol=1e-5
    )
    loss.backward()
    assert neighbours.grad is None and predictions.grad.abs().sum() > 0


def _nnclr_on_rank(rank: int, world_size: int, neighbours, predictions) -> tuple:
    local = predictions.chunk(world_size)[rank].clone().requires_grad_(True)
    loss = nnclr_loss(neighbours.chunk(world_size)[rank], local, 0.5)
    loss.backward()
    return loss.detach(), local.grad


def test_nnclr_loss_on_two_ranks_matches_one_process_with_the_whole_batch():
    generator = torch.Generator().manual_seed(1)
    neighbours, predictions = (
        torch.randn(8, 4, generator=generator),
        torch.randn(8, 4, generator=generator),
    )
    results = run_distributed(_nnclr_on_rank, neighbours, predictions)
    single = predictions.clone().requires_grad_(True)
    expected = nnclr_loss(neighbours, single, 0.5)
    expected.backward()
    # DDP averages the ranks' gradients; the ranks' losses are means over equal halves
    torch.testing.assert_close(torch.stack([loss for loss, _ in results]).mean(), expected.detach())
    torch.testing.assert_close(torch.cat([grad / 2 for _, grad in results]), single.grad)
