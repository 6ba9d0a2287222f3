"""VICReg: Bardes, Ponce & LeCun, "VICReg: Variance-Invariance-Covariance Regularization for
Self-Supervised Learning", ICLR 2022."""

from __future__ import annotations

from typing import Any

import torch

from rotaux.heads import MLP
from rotaux.losses.vicreg import vicreg_loss
from rotaux.methods.base import SSLMethod
from rotaux.methods.registry import register_method
from rotaux.methods.rotation import RotationAuxMixin
from rotaux.optim import OptimizerConfig


@register_method(
    "vicreg",
    paper='Bardes et al., "VICReg", ICLR 2022',
)
class VICReg(RotationAuxMixin, SSLMethod):
    """VICReg with the rotation auxiliary.

    The two views' projections are pulled together (invariance) while each view's per-dimension
    standard deviation over the global batch is kept above 1 (variance) and its dimensions are
    decorrelated (covariance). The projector has three layers as in the paper;
    defaults are solo-learn's CIFAR recipe (``scripts/pretrain/cifar/vicreg.yaml``): width 2048,
    LARS with lr 0.3 for a batch of 256, eta 0.02 and weight decay 1e-4; the loss weights 25/25/1
    are the paper's.

    Args:
        optimizer: optimizer and schedule (this recipe's by default).
        proj_hidden_dim: hidden width of the projector.
        proj_output_dim: output width of the projector.
        invariance_weight: weight of the invariance (mean squared error) term (lambda).
        variance_weight: weight of the variance term (mu).
        covariance_weight: weight of the covariance term (nu).
    """

    def __init__(
        self,
        optimizer: OptimizerConfig = OptimizerConfig(lr=0.3, weight_decay=1e-4),
        proj_hidden_dim: int = 2048,
        proj_output_dim: int = 2048,
        invariance_weight: float = 25.0,
        variance_weight: float = 25.0,
        covariance_weight: float = 1.0,
        **base_options: Any,
    ) -> None:
        super().__init__(optimizer=optimizer, **base_options)
        self.projector = MLP(self.num_features, proj_hidden_dim, proj_output_dim, num_layers=3)
        self.invariance_weight = invariance_weight
        self.variance_weight = variance_weight
        self.covariance_weight = covariance_weight

    def project(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Backbone features and projections of ``images``."""
        features = self.backbone(images)
        return features, self.projector(features)

    def training_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        view_1, view_2 = batch["views"]
        features_1, projection_1 = self.project(view_1)
        _, projection_2 = self.project(view_2)
        loss = vicreg_loss(
            projection_1,
            projection_2,
            self.invariance_weight,
            self.variance_weight,
            self.covariance_weight,
        )
        return self.step_output(loss, batch, features_1)
