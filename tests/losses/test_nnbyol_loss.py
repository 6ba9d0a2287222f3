import math

import torch

from rotaux.losses.nnbyol import nnbyol_loss


def _naive_regression(predictions, targets) -> float:
    """Mean over rows of ||p/|p| - t/|t|||^2, written out in float64."""
    total = 0.0
    for p_row, t_row in zip(predictions.tolist(), targets.tolist(), strict=True):
        p_norm = math.sqrt(sum(x * x for x in p_row))
        t_norm = math.sqrt(sum(x * x for x in t_row))
        total += sum((p / p_norm - t / t_norm) ** 2 for p, t in zip(p_row, t_row, strict=True))
    return total / len(predictions)


def test_hand_computed_value():
    # p1 . nn2: orthogonal (2), p2 . nn1: identical direction (0)
    prediction_1 = torch.tensor([[1.0, 0.0]])
    prediction_2 = torch.tensor([[0.0, 3.0]])
    neighbours_1 = torch.tensor([[0.0, 0.5]])
    neighbours_2 = torch.tensor([[0.0, 1.0]])
    loss = nnbyol_loss(prediction_1, prediction_2, neighbours_1, neighbours_2)
    assert loss.item() == 2.0


def test_matches_naive_loop_and_sends_no_gradient_to_the_neighbours():
    generator = torch.Generator().manual_seed(0)
    p1, p2, n1, n2 = (torch.randn(6, 5, generator=generator, requires_grad=True) for _ in range(4))
    loss = nnbyol_loss(p1, p2, n1, n2)
    expected = _naive_regression(p1.detach(), n2.detach()) + _naive_regression(
        p2.detach(), n1.detach()
    )
    assert math.isclose(loss.item(), expected, rel_tol=1e-5)
    loss.backward()
    assert n1.grad is None and n2.grad is None
    assert p1.grad.abs().sum() > 0 and p2.grad.abs().sum() > 0
