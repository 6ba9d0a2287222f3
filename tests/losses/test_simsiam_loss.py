import math

import torch

from rotaux.losses.simsiam import simsiam_loss


def test_simsiam_loss_matches_hand_computed_value():
    prediction_1, projection_2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 2.0]])
    prediction_2, projection_1 = torch.tensor([[0.0, 3.0]]), torch.tensor([[0.0, -1.0]])
    # D(p1, z2) = -cos 45 deg, D(p2, z1) = -cos 180 deg = 1
    expected = (-1 / math.sqrt(2) + 1) / 2
    loss = simsiam_loss(prediction_1, prediction_2, projection_1, projection_2)
    assert math.isclose(loss.item(), expected, rel_tol=1e-6)


def test_simsiam_loss_is_minus_one_for_aligned_pairs_and_averages_over_the_batch():
    predictions = torch.tensor([[1.0, 1.0], [0.0, 5.0]])
    assert math.isclose(
        simsiam_loss(predictions, predictions, 2 * predictions, 3 * predictions).item(), -1.0
    )


def test_simsiam_loss_stops_the_gradient_of_the_projections():
    torch.manual_seed(0)
    prediction_1, prediction_2, projection_1, projection_2 = (
        torch.randn(4, 3, requires_grad=True) for _ in range(4)
    )
    simsiam_loss(prediction_1, prediction_2, projection_1, projection_2).backward()
    assert projection_1.grad is None and projection_2.grad is None
    assert prediction_1.grad.abs().sum() > 0 and prediction_2.grad.abs().sum() > 0
