"""Projection, prediction and auxiliary heads shared by the methods."""

from __future__ import annotations

import torch
import torch.nn.functional as F
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


def _float32_linear(inputs: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``inputs @ weight.T`` in float32 even under autocast: prototype scores are cosines that
    the methods divide by temperatures of 0.04-0.1 (and Sinkhorn's 0.05), which would turn the
    rounding error of bfloat16 into errors of several percent in the probabilities."""
    with torch.autocast(device_type=inputs.device.type, enabled=False):
        return F.linear(inputs.float(), weight.float())


class Prototypes(nn.Linear):
    """SwAV's prototypes (Caron et al. 2020, Sec. 3.1): a linear layer without bias whose
    ``num_prototypes`` weight rows are prototype vectors, scored against (unit-norm) embeddings
    in float32. :meth:`normalize_` puts the rows back on the unit sphere; SwAV calls it before
    every training step, so the scores are cosine similarities."""

    def __init__(self, dim: int, num_prototypes: int) -> None:
        super().__init__(dim, num_prototypes, bias=False)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return _float32_linear(embeddings, self.weight)

    @torch.no_grad()
    def normalize_(self) -> None:
        self.weight.copy_(F.normalize(self.weight, dim=1))


class DINOHead(nn.Module):
    """DINO's head (Caron et al. 2021, Sec. 3.1 and the official ``DINOHead``).

    ``num_layers`` linear layers (hidden width ``hidden_dim``, GELU, BatchNorm only with
    ``batch_norm``) map the features to a ``bottleneck_dim`` bottleneck, which is L2-normalised
    and scored against ``out_dim`` prototypes by a weight-normalised linear layer whose norm is
    fixed to 1 (the official ``norm_last_layer=True``): the outputs are cosine similarities,
    computed in float32. The MLP's weights start from a truncated normal with std 0.02 and zero
    biases, as in the official code.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        out_dim: int = 65536,
        num_layers: int = 3,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"A DINO head needs at least one layer, got num_layers={num_layers}.")
        layers: list[nn.Module] = []
        dims = [in_dim] + [hidden_dim] * (num_layers - 1)
        for layer_in, layer_out in zip(dims[:-1], dims[1:], strict=True):
            layers.append(nn.Linear(layer_in, layer_out))
            if batch_norm:
                layers.append(nn.BatchNorm1d(layer_out))
            layers.append(nn.GELU())
        layers.append(nn.Linear(dims[-1], bottleneck_dim))
        self.mlp = nn.Sequential(*layers)
        for layer in self.mlp:
            if isinstance(layer, nn.Linear):
                nn.init.trunc_normal_(layer.weight, std=0.02)
                nn.init.zeros_(layer.bias)
        self.last_layer = nn.Linear(bottleneck_dim, out_dim, bias=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        bottleneck = F.normalize(self.mlp(features).float(), dim=-1)
        return _float32_linear(bottleneck, F.normalize(self.last_layer.weight.float(), dim=-1))
