import math

import torch

from rotaux.losses.nnsiam import nnsiam_loss


def _naive_negative_cosine(predictions, targets) -> float:
    total = 0.0
    for p_row, t_row in zip(predictions.tolist(), targets.tolist(), strict=True):
        dot = sum(p * t for p, t in zip(p_row, t_row, strict=True))
        total -= dot / math.sqrt(sum(p * p for p in p_row) * sum(t * t for t in t_row))
    return total / len(predictions)


def test_hand_computed_value():
    # p1 against nn2: the same direction (-1); p2 against nn1: opposite (+1); halves summed: 0
    prediction_1 = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    neighbours_2 = torch.tensor([[1.0, 0.0], [0.0, 4.0]])
    prediction_2 = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    neighbours_1 = torch.tensor([[-1.0, -1.0], [-3.0, 0.0]])
    assert nnsiam_loss(prediction_1, prediction_2, neighbours_1, neighbours_2).item() == 0.0
    assert nnsiam_loss(prediction_1, prediction_1, neighbours_2, neighbours_2).item() == -1.0


def test_matches_naive_loop_and_sends_no_gradient_to_the_neighbours():
    generator = torch.Generator().manual_seed(0)
    p1, p2, n1, n2 = (torch.randn(7, 4, generator=generator, requires_grad=True) for _ in range(4))
    loss = nnsiam_loss(p1, p2, n1, n2)
    expected = (
        _naive_negative_cosine(p1.detach(), n2.detach())
        + _naive_negative_cosine(p2.detach(), n1.detach())
    ) / 2
    assert math.isclose(loss.item(), expected, rel_tol=1e-5)
    loss.backward()
    assert n1.grad is None and n2.grad is None and p1.grad.abs().sum() > 0
