import math

import torch

from rotaux.losses.moco import moco_loss


def _naive_moco(query, key, negatives, temperature: float) -> float:
    def unit(row: torch.Tensor) -> list[float]:
        norm = math.sqrt(sum(float(x) ** 2 for x in row))
        return [float(x) / norm for x in row]

    def dot(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    total = 0.0
    for q_row, k_row in zip(query, key, strict=True):
        q = unit(q_row)
        logits = [dot(q, unit(k_row)) / temperature]
        logits += [dot(q, unit(n_row)) / temperature for n_row in negatives]
        total += -logits[0] + math.log(sum(math.exp(logit) for logit in logits))
    return total / len(query)


def test_moco_loss_of_orthogonal_negative_matches_hand_computed_value():
    # cos(q, k) = 1, cos(q, n) = 0: -1/t + log(e^(1/t) + e^0) with t = 0.5
    query, key = torch.tensor([[3.0, 0.0]]), torch.tensor([[2.0, 0.0]])
    negatives = torch.tensor([[0.0, 5.0]])
    expected = math.log(1 + math.exp(-2.0))
    assert math.isclose(moco_loss(query, key, negatives, 0.5).item(), expected, rel_tol=1e-6)


def test_moco_loss_matches_naive_loop_and_sends_gradient_only_to_the_query():
    generator = torch.Generator().manual_seed(0)
    query = torch.randn(4, 3, generator=generator, requires_grad=True)
    key = torch.randn(4, 3, generator=generator, requires_grad=True)
    negatives = torch.randn(6, 3, generator=generator, requires_grad=True)
    loss = moco_loss(query, key, negatives, 0.2)
    assert math.isclose(
        loss.item(),
        _naive_moco(query.detach(), key.detach(), negatives.detach(), 0.2),
        rel_tol=1e-5,
    )
    loss.backward()
    assert query.grad is not None and query.grad.abs().sum() > 0
    assert key.grad is None and negatives.grad is None


def test_moco_loss_lets_the_queue_change_in_place_before_backward():
    query = torch.randn(4, 3, requires_grad=True)
    queue = torch.randn(6, 3)
    loss = moco_loss(query, torch.randn(4, 3), queue, 0.2)
    expected = torch.autograd.grad(loss, query, retain_graph=True)[0]
    queue.add_(1.0)  # what FeatureQueue.push does after the loss
    loss.backward()
    torch.testing.assert_close(query.grad, expected)
