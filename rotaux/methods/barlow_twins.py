"""Barlow Twins: Zbontar et al., "Barlow Twins: Self-Supervised Learning via Redundancy
Reduction", ICML 2021."""

from __future__ import annotations

from typing import Any

import torch

from rotaux.heads import MLP
from rotaux.losses.barlow_twins import barlow_twins_loss
from rotaux.methods.base import SSLMethod
from rotaux.methods.registry import register_method
from rotaux.methods.rotation import RotationAuxMixin
from rotaux.optim import OptimizerConfig


@register_method(
    "barlow_twins",
    paper='Zbontar et al., "Barlow Twins", ICML 2021',
)
class BarlowTwins(RotationAuxMixin, SSLMethod):
    """Barlow Twins with the rotation auxiliary.

    The cross-correlation of the two views' standardised projections, over the global batch, is
    driven to the identity. The projector has three layers as in the paper; defaults
    are solo-learn's CIFAR recipe (``scripts/pretrain/cifar/barlow.yaml``): width 2048,
    ``scale_loss`` 0.1, LARS with lr 0.3 for a batch of 256, eta 0.02 and weight decay 1e-4;
    ``lambd=0.0051`` is the paper's.

    Args:
        optimizer: optimizer and schedule (this recipe's by default).
        proj_hidden_dim: hidden width of the projector.
        proj_output_dim: output width of the projector (size of the cross-correlation matrix).
        lambd: weight of the redundancy-reduction (off-diagonal) term.
        scale_loss: factor on the whole loss.
    """

    def __init__(
        self,
        optimizer: OptimizerConfig = OptimizerConfig(lr=0.3, weight_decay=1e-4),
        proj_hidden_dim: int = 2048,
        proj_output_dim: int = 2048,
        lambd: float = 0.0051,
        scale_loss: float = 0.1,
        **base_options: Any,
    ) -> None:
        super().__init__(optimizer=optimizer, **base_options)
        self.projector = MLP(self.num_features, proj_hidden_dim, proj_output_dim, num_layers=3)
        self.lambd = lambd
        self.scale_loss = scale_loss

    def project(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Backbone features and projections of ``images``."""
        features = self.backbone(images)
        return features, self.projector(features)

    def training_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        view_1, view_2 = batch["views"]
        features_1, projection_1 = self.project(view_1)
        _, projection_2 = self.project(view_2)
        loss = barlow_twins_loss(projection_1, projection_2, self.lambd, self.scale_loss)
        return self.step_output(loss, batch, features_1)
