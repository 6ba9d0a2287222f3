import pytest
import torch
from torch import nn

from rotaux.heads import MLP


def test_two_layer_mlp_is_byols_projector():
    mlp = MLP(16, 32, 8)
    assert [type(layer) for layer in mlp] == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert (mlp[0].in_features, mlp[0].out_features) == (16, 32)
    assert mlp[0].bias is None  # followed by BatchNorm
    assert (mlp[3].in_features, mlp[3].out_features) == (32, 8)
    assert mlp[3].bias is not None
    assert mlp.out_dim == 8
    assert mlp(torch.randn(4, 16)).shape == (4, 8)


def test_layer_count_and_last_batch_norm():
    single = MLP(16, 32, 4, num_layers=1)
    assert len(single) == 1 and single[0].in_features == 16
    deep = MLP(16, 32, 4, num_layers=3, last_batch_norm=True)
    linears = [layer for layer in deep if isinstance(layer, nn.Linear)]
    assert [(x.in_features, x.out_features) for x in linears] == [(16, 32), (32, 32), (32, 4)]
    assert linears[-1].bias is None
    assert isinstance(deep[-1], nn.BatchNorm1d) and not deep[-1].affine
    out = deep.train()(torch.randn(8, 16))
    # the last BatchNorm standardises every output dimension over the batch
    torch.testing.assert_close(out.mean(dim=0), torch.zeros(4), atol=1e-5, rtol=0)


def test_zero_layers_is_rejected():
    with pytest.raises(ValueError, match="num_layers"):
        MLP(4, 4, 4, num_layers=0)
