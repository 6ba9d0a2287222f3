"""BYOL: Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from rotaux.heads import MLP
from rotaux.losses import byol_loss
from rotaux.methods.momentum import MomentumMethod
from rotaux.methods.registry import register_method
from rotaux.methods.rotation import RotationAuxMixin


@register_method(
    "byol",
    paper='Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020',
)
class BYOL(RotationAuxMixin, MomentumMethod):
    """BYOL with the rotation auxiliary.

    The online network (backbone, projector, predictor) predicts the target network's projection
    of the other view; the target (backbone + projector) is an EMA of the online one and never
    sees the rotated copies. Head sizes are the paper's (projector 4096 -> 256, predictor
    4096 -> 256, Sec. 3.3); the momentum schedule 0.99 -> 1.0 and the LARS recipe in
    :class:`~rotaux.optim.OptimizerConfig` are solo-learn's CIFAR settings (the paper uses 0.996
    on ImageNet).

    Args:
        proj_hidden_dim: hidden width of the projector.
        proj_output_dim: output width of projector and predictor.
        pred_hidden_dim: hidden width of the predictor.
    """

    def __init__(
        self,
        proj_hidden_dim: int = 4096,
        proj_output_dim: int = 256,
        pred_hidden_dim: int = 4096,
        **base_options: Any,
    ) -> None:
        super().__init__(**base_options)
        self.projector = self.build_projector(self.num_features, proj_hidden_dim, proj_output_dim)
        self.predictor = MLP(proj_output_dim, pred_hidden_dim, proj_output_dim)
        self.target_backbone = self.momentum_copy(self.backbone)
        self.target_projector = self.momentum_copy(self.projector)

    def build_projector(self, in_dim: int, hidden_dim: int, out_dim: int) -> nn.Module:
        """BYOL's projector; override it to try another head (examples/custom_method.py)."""
        return MLP(in_dim, hidden_dim, out_dim)

    def online(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Backbone features and predictions of the online network."""
        features = self.backbone(images)
        return features, self.predictor(self.projector(features))

    @torch.no_grad()
    def target(self, images: torch.Tensor) -> torch.Tensor:
        """Projection of the target network, without gradient."""
        return self.target_projector(self.target_backbone(images))

    def training_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        view_1, view_2 = batch["views"]
        features_1, prediction_1 = self.online(view_1)
        _, prediction_2 = self.online(view_2)
        loss = byol_loss(prediction_1, prediction_2, self.target(view_1), self.target(view_2))
        return self.step_output(loss, batch, features_1)
