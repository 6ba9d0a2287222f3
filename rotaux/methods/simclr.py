"""SimCLR: Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations",
ICML 2020."""

from __future__ import annotations

from typing import Any

import torch

from rotaux.heads import MLP
from rotaux.losses.simclr import nt_xent_loss
from rotaux.methods.base import SSLMethod
from rotaux.methods.registry import register_method
from rotaux.methods.rotation import RotationAuxMixin
from rotaux.optim import OptimizerConfig


@register_method(
    "simclr",
    paper='Chen et al., "A Simple Framework for Contrastive Learning of Visual '
    'Representations", ICML 2020',
)
class SimCLR(RotationAuxMixin, SSLMethod):
    """SimCLR with the rotation auxiliary.

    Each image's two views are pulled together and pushed away from every other view in the
    global batch (gathered over all devices) by the NT-Xent loss on the projector's output.
    Defaults are solo-learn's CIFAR recipe: projector 2048 -> 256, temperature 0.2, LARS with lr
    0.4 for a batch of 256, eta 0.02 and weight decay 1e-4 (``scripts/pretrain/cifar/simclr.yaml``);
    the projector keeps the BatchNorm of the paper's reference code (solo-learn's has none).

    Args:
        optimizer: optimizer and schedule (this recipe's by default).
        proj_hidden_dim: hidden width of the projector.
        proj_output_dim: output width of the projector.
        temperature: softmax temperature of the NT-Xent loss.
    """

    def __init__(
        self,
        optimizer: OptimizerConfig = OptimizerConfig(lr=0.4, weight_decay=1e-4),
        proj_hidden_dim: int = 2048,
        proj_output_dim: int = 256,
        temperature: float = 0.2,
        **base_options: Any,
    ) -> None:
        super().__init__(optimizer=optimizer, **base_options)
        self.projector = MLP(self.num_features, proj_hidden_dim, proj_output_dim)
        self.temperature = temperature

    def project(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Backbone features and projections of ``images``."""
        features = self.backbone(images)
        return features, self.projector(features)

    def training_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        view_1, view_2 = batch["views"]
        features_1, projection_1 = self.project(view_1)
        _, projection_2 = self.project(view_2)
        loss = nt_xent_loss(projection_1, projection_2, self.temperature)
        return self.step_output(loss, batch, features_1)
