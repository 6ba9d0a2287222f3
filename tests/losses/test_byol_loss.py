import pytest
import torch

from rotaux.losses import byol_loss
from rotaux.losses.byol import normalized_mse


def test_normalized_mse_is_two_minus_two_cosine_per_pair():
    prediction = torch.tensor([[1.0, 0.0], [3.0, 0.0], [2.0, 0.0]])
    # orthogonal, parallel (different norm), opposite: 2, 0, 4
    target = torch.tensor([[0.0, 5.0], [0.5, 0.0], [-7.0, 0.0]])
    for row, expected in enumerate([2.0, 0.0, 4.0]):
        value = normalized_mse(prediction[row : row + 1], target[row : row + 1])
        torch.testing.assert_close(value, torch.tensor(expected))
    torch.testing.assert_close(normalized_mse(prediction, target), torch.tensor(2.0))


def test_byol_loss_symmetrises_prediction_of_the_other_views_target():
    p1 = torch.tensor([[1.0, 0.0]])
    p2 = torch.tensor([[0.0, 1.0]])
    t1 = torch.tensor([[0.0, 2.0]])  # parallel to p2, orthogonal to p1
    t2 = torch.tensor([[-3.0, 0.0]])  # opposite to p1, orthogonal to p2
    # p1 regresses t2 (4) and p2 regresses t1 (0); the wrong pairing would give 2 + 2
    torch.testing.assert_close(byol_loss(p1, p2, t1, t2), torch.tensor(4.0))
    torch.testing.assert_close(byol_loss(p2, p1, t2, t1), torch.tensor(4.0))


def test_loss_matches_cosine_formula_on_random_batches():
    torch.manual_seed(0)
    p1, p2, t1, t2 = (torch.randn(6, 5) for _ in range(4))
    cos = torch.nn.functional.cosine_similarity
    expected = (2 - 2 * cos(p1, t2)).mean() + (2 - 2 * cos(p2, t1)).mean()
    torch.testing.assert_close(byol_loss(p1, p2, t1, t2), expected)


def test_no_gradient_reaches_the_target():
    prediction = torch.randn(4, 8, requires_grad=True)
    target = torch.randn(4, 8, requires_grad=True)
    normalized_mse(prediction, target).backward()
    assert target.grad is None
    assert prediction.grad is not None and prediction.grad.abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_inputs_give_a_float32_loss(dtype):
    torch.manual_seed(0)
    p1, p2, t1, t2 = (torch.randn(8, 16) for _ in range(4))
    loss = byol_loss(*(x.to(dtype) for x in (p1, p2, t1, t2)))
    assert loss.dtype == torch.float32
    reference = byol_loss(*(x.to(dtype).float() for x in (p1, p2, t1, t2)))
    torch.testing.assert_close(loss, reference)
