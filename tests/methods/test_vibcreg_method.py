import pytest
import torch
from torch import nn

from rotaux.backbones import ResNet
from rotaux.methods.vibcreg import IterNorm, VIbCReg


def _naive_iternorm(features: torch.Tensor, group_size: int, iterations: int, eps: float):
    """Newton's iterations for each group's Sigma^-1/2, matrix products as float64 loops."""

    def matmul(a: list[list[float]], b: list[list[float]]) -> list[list[float]]:
        return [
            [
                sum(x * y for x, y in zip(row, column, strict=True))
                for column in zip(*b, strict=True)
            ]
            for row in a
        ]

    count, width = features.shape
    out = torch.zeros(count, width, dtype=torch.float64)
    for start in range(0, width, group_size):
        group = features[:, start : start + group_size].double()
        centred = (group - group.mean(dim=0)).tolist()
        size = group_size
        sigma = matmul(list(map(list, zip(*centred, strict=True))), centred)
        sigma = [
            [v / count + (eps if i == j else 0.0) for j, v in enumerate(row)]
            for i, row in enumerate(sigma)
        ]
        trace = sum(sigma[i][i] for i in range(size))
        normalised = [[v / trace for v in row] for row in sigma]
        projection = [[float(i == j) for j in range(size)] for i in range(size)]
        for _ in range(iterations):
            cube = matmul(matmul(matmul(projection, projection), projection), normalised)
            projection = [
                [1.5 * p - 0.5 * c for p, c in zip(prow, crow, strict=True)]
                for prow, crow in zip(projection, cube, strict=True)
            ]
        whitening = [[v / trace**0.5 for v in row] for row in projection]
        whitened = matmul(centred, list(map(list, zip(*whitening, strict=True))))
        out[:, start : start + group_size] = torch.tensor(whitened)
    return out.float()


@pytest.mark.parametrize(
    ("features", "groups", "expected"), [(2048, 64, (64, 32)), (32, 64, (32, 1)), (24, 5, (12, 2))]
)
def test_iternorm_splits_the_features_into_groups_as_solo_learn(features, groups, expected):
    norm = IterNorm(features, num_groups=groups)
    assert (norm.num_groups, norm.group_size) == expected


def test_iternorm_in_training_matches_naive_newton_iterations():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(10, 6, generator=generator) @ torch.randn(6, 6, generator=generator)
    output = IterNorm(6, num_groups=2, iterations=5)(features)
    expected = _naive_iternorm(features, group_size=3, iterations=5, eps=1e-5)
    torch.testing.assert_close(output, expected, atol=1e-4, rtol=1e-4)


def test_iternorm_whitens_a_well_conditioned_group_in_its_five_iterations():
    generator = torch.Generator().manual_seed(1)
    mixing = torch.tensor([[1.0, 0.5, 0.0], [0.0, 1.0, 0.4], [0.0, 0.0, 1.0]])
    features = torch.randn(200, 3, generator=generator) @ mixing * 3 + 1
    # Newton's iterations converge fast here (1e-3 after 5; more would not help: the uncoupled
    # iteration drifts in float32 after about 15)
    output = IterNorm(3, num_groups=1)(features)
    torch.testing.assert_close(output.mean(dim=0), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(output.T @ output / 200, torch.eye(3), atol=1e-3, rtol=0)


def test_iternorm_in_evaluation_uses_the_running_statistics():
    generator = torch.Generator().manual_seed(2)
    features = torch.randn(12, 4, generator=generator) * 2 + 3
    norm = IterNorm(4, num_groups=2)
    norm.momentum = 1.0  # the running statistics become the last batch's
    training = norm(features)
    # a part of the batch gets other statistics in training, the batch's in evaluation
    assert not torch.allclose(norm(features[:6]), training[:6], atol=1e-3)
    norm(features)
    torch.testing.assert_close(norm.eval()(features[:6]), training[:6])


def test_the_projector_ends_in_iternorm_only_when_asked():
    def projector_end(iternorm: bool) -> nn.Module:
        model = VIbCReg(
            backbone=ResNet(width=8, cifar_stem=True),
            proj_hidden_dim=16,
            proj_output_dim=8,
            iternorm=iternorm,
            rotation_weight=0.0,
        )
        return model.projector[-1]

    assert isinstance(projector_end(True), IterNorm)
    assert isinstance(projector_end(False), nn.Linear)
