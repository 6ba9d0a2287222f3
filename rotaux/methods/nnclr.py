"""NNCLR: Dwibedi et al., "With a Little Help from My Friends: Nearest-Neighbor Contrastive
Learning of Visual Representations", ICCV 2021."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rotaux.heads import MLP
from rotaux.losses.nnclr import nearest_neighbours, nnclr_loss
from rotaux.methods.base import SSLMethod
from rotaux.methods.registry import register_method
from rotaux.methods.rotation import RotationAuxMixin
from rotaux.optim import OptimizerConfig
from rotaux.queue import FeatureQueue


@register_method(
    "nnclr",
    paper='Dwibedi et al., "With a Little Help from My Friends", ICCV 2021',
)
class NNCLR(RotationAuxMixin, SSLMethod):
    """NNCLR with the rotation auxiliary.

    Each view's projection is replaced by its nearest neighbour in a support set of projections
    from past steps, which must then pick out the prediction of the other view among the
    predictions of the global batch (NT-Xent, symmetrised over the views). The support set takes
    the normalised projections of the first view from every rank after the loss and is a buffer
    saved in checkpoints. Defaults are solo-learn's CIFAR recipe
    (``scripts/pretrain/cifar/nnclr.yaml``): a 3-layer projector 2048 -> 256 ending in
    BatchNorm, predictor 4096 -> 256, temperature 0.2, support set 65536, LARS with lr 0.4 for a
    batch of 256, eta 0.02 and weight decay 1e-5.

    Args:
        optimizer: optimizer and schedule (this recipe's by default).
        proj_hidden_dim: hidden width of the projector.
        proj_output_dim: output width of projector and predictor.
        pred_hidden_dim: hidden width of the predictor.
        temperature: softmax temperature of the contrastive loss.
        queue_size: number of projections in the support set.
    """

    def __init__(
        self,
        optimizer: OptimizerConfig = OptimizerConfig(lr=0.4, weight_decay=1e-5),
        proj_hidden_dim: int = 2048,
        proj_output_dim: int = 256,
        pred_hidden_dim: int = 4096,
        temperature: float = 0.2,
        queue_size: int = 65536,
        **base_options: Any,
    ) -> None:
        super().__init__(optimizer=optimizer, **base_options)
        self.projector = nn.Sequential(
            MLP(self.num_features, proj_hidden_dim, proj_output_dim, num_layers=3),
            nn.BatchNorm1d(proj_output_dim),
        )
        self.predictor = MLP(proj_output_dim, pred_hidden_dim, proj_output_dim)
        self.temperature = temperature
        self.support_set = FeatureQueue(queue_size, proj_output_dim)

    def online(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Backbone features, projections and predictions of ``images``."""
        features = self.backbone(images)
        projection = self.projector(features)
        return features, projection, self.predictor(projection)

    def training_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        view_1, view_2 = batch["views"]
        features_1, projection_1, prediction_1 = self.online(view_1)
        _, projection_2, prediction_2 = self.online(view_2)
        support = self.support_set.rows
        neighbours_1 = nearest_neighbours(projection_1, support)
        neighbours_2 = nearest_neighbours(projection_2, support)
        loss = (
            nnclr_loss(neighbours_1, prediction_2, self.temperature)
            + nnclr_loss(neighbours_2, prediction_1, self.temperature)
        ) / 2
        self.support_set.push(F.normalize(projection_1.float(), dim=-1))
        return self.step_output(loss, batch, features_1)
