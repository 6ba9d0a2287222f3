"""Projection, prediction and auxiliary heads shared by the methods."""

from __future__ import annotations

from torch import nn


class MLP(nn.Sequential):
    """``num_layers`` linear layers with BatchNorm and ReLU between them.

    With ``num_layers=2`` this is the projector/predictor of BYOL (Grill et al., 2020, Sec. 3.3):
    Linear -> BN -> ReLU -> Linear. ``last_batch_norm`` adds a BatchNorm without affine parameters
    after the last layer (SimSiam's projector, Chen & He, 2021).
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        out_dim: int,
        num_layers: int = 2,
        last_batch_norm: bool = False,
    ) -> None:
        if num_layers < 1:
            raise ValueError(f"An MLP needs at least one layer, got num_layers={num_layers}.")
        layers: list[nn.Module] = []
        dims = [in_dim] + [hidden_dim] * (num_layers - 1)
        for layer_in, layer_out in zip(dims[:-1], dims[1:], strict=True):
            layers += [
                nn.Linear(layer_in, layer_out, bias=False),
                nn.BatchNorm1d(layer_out),
                nn.ReLU(inplace=True),
            ]
        layers.append(nn.Linear(dims[-1], out_dim, bias=not last_batch_norm))
        if last_batch_norm:
            layers.append(nn.BatchNorm1d(out_dim, affine=False))
        super().__init__(*layers)
        self.out_dim = out_dim
