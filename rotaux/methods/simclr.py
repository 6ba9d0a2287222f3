"""SimCLR: Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations",
ICML 2020."""

from __future__ import annotations

import torch

from rotaux.backbones import BackboneName
from rotaux.heads import MLP
from rotaux.losses.simclr import nt_xent_loss
from rotaux.methods.base import SSLMethod
from rotaux.methods.rotation import RotationAuxMixin
from rotaux.optim import OptimizerConfig


class SimCLR(RotationAuxMixin, SSLMethod):
    """SimCLR with the rotation auxiliary.

    Each image's two views are pulled together and pushed away from every other view in the
    global batch (gathered over all devices) by the NT-Xent loss on the projector's output.
    Defaults are solo-learn's CIFAR recipe: projector 2048 -> 256, temperature 0.2, LARS with lr
    0.4 for a batch of 256, eta 0.02 and weight decay 1e-4 (``scripts/pretrain/cifar/simclr.yaml``);
    the projector keeps the BatchNorm of the paper's reference code (solo-learn's has none).
    ``rotation_weight=0.4`` is E-SSL's lambda (Dangovski et al., 2022).

    Args:
        proj_hidden_dim: hidden width of the projector.
        proj_output_dim: output width of the projector.
        temperature: softmax temperature of the NT-Xent loss.
        rotation_weight: weight of the rotation loss; 0 trains plain SimCLR with no rotation work.
        rotation_hidden_dim: hidden width of the rotation head.
        rotation_num_layers: linear layers in the rotation head.
    """

    def __init__(
        self,
        backbone: BackboneName = "resnet18",
        cifar_stem: bool = False,
        backbone_width: int = 64,
        optimizer: OptimizerConfig = OptimizerConfig(lr=0.4, weight_decay=1e-4),
        channels_last: bool = True,
        proj_hidden_dim: int = 2048,
        proj_output_dim: int = 256,
        temperature: float = 0.2,
        rotation_weight: float = 0.4,
        rotation_hidden_dim: int = 2048,
        rotation_num_layers: int = 2,
    ) -> None:
        super().__init__(backbone, cifar_stem, backbone_width, optimizer, channels_last)
        self.projector = MLP(self.num_features, proj_hidden_dim, proj_output_dim)
        self.temperature = temperature
        self.setup_rotation_head(rotation_weight, rotation_hidden_dim, rotation_num_layers)

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
