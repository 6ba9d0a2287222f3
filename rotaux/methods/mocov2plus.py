"""MoCo v2+: He et al., "Momentum Contrast for Unsupervised Visual Representation Learning",
CVPR 2020; Chen et al., "Improved Baselines with Momentum Contrastive Learning", 2020; the
symmetrised loss of Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rotaux.losses.moco import moco_loss
from rotaux.methods.momentum import MomentumMethod
from rotaux.methods.registry import register_method
from rotaux.methods.rotation import RotationAuxMixin
from rotaux.optim import OptimizerConfig
from rotaux.queue import FeatureQueue


@register_method(
    "mocov2plus",
    paper='Chen et al., "Improved Baselines with Momentum Contrastive Learning", 2020 '
    "(solo-learn's v2+)",
)
class MoCoV2Plus(RotationAuxMixin, MomentumMethod):
    """MoCo v2+ with the rotation auxiliary.

    The query encoder (backbone + MLP projector without BatchNorm, MoCo v2) matches each view's
    query to the momentum key encoder's key of the other view, against a queue of keys from past
    steps as negatives; the loss is symmetrised over the two views. As in solo-learn there is
    one queue per view: the queries of view 1 meet past keys of view 2, the queue their positive
    would join, and vice versa. The queues take the keys of every rank after the loss, so the
    keys of a step are never negatives in that step, and are buffers saved in checkpoints. Like
    solo-learn (and unlike the paper's 8-GPU code) the key encoder does not shuffle BatchNorm
    across devices; use ``trainer.sync_batchnorm``. Defaults are solo-learn's CIFAR recipe
    (``scripts/pretrain/cifar/mocov2plus.yaml``): projector 2048 -> 256, temperature 0.2, queue
    32768, momentum 0.99 -> 0.999, SGD with lr 0.3 for a batch of 256 and weight decay 1e-4.

    Args:
        optimizer: optimizer and schedule (this recipe's by default).
        final_momentum: EMA momentum of the key encoder at the last step.
        proj_hidden_dim: hidden width of the projector.
        proj_output_dim: output width of the projector (the embedding compared by the loss).
        temperature: softmax temperature of the InfoNCE loss.
        queue_size: number of negative keys kept per view.
    """

    def __init__(
        self,
        optimizer: OptimizerConfig = OptimizerConfig(name="sgd", lr=0.3, weight_decay=1e-4),
        final_momentum: float = 0.999,
        proj_hidden_dim: int = 2048,
        proj_output_dim: int = 256,
        temperature: float = 0.2,
        queue_size: int = 32768,
        **base_options: Any,
    ) -> None:
        super().__init__(optimizer=optimizer, final_momentum=final_momentum, **base_options)
        self.projector = nn.Sequential(
            nn.Linear(self.num_features, proj_hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(proj_hidden_dim, proj_output_dim),
        )
        self.key_backbone = self.momentum_copy(self.backbone)
        self.key_projector = self.momentum_copy(self.projector)
        self.temperature = temperature
        self.queues = nn.ModuleList([FeatureQueue(queue_size, proj_output_dim) for _ in range(2)])

    def query(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Backbone features and queries of the query encoder."""
        features = self.backbone(images)
        return features, self.projector(features)

    @torch.no_grad()
    def key(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised keys of the momentum encoder, without gradient."""
        return F.normalize(self.key_projector(self.key_backbone(images)).float(), dim=-1)

    def training_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        view_1, view_2 = batch["views"]
        features_1, query_1 = self.query(view_1)
        _, query_2 = self.query(view_2)
        key_1, key_2 = self.key(view_1), self.key(view_2)
        queue_1, queue_2 = self.queues
        loss = (
            moco_loss(query_1, key_2, queue_2.rows, self.temperature)
            + moco_loss(query_2, key_1, queue_1.rows, self.temperature)
        ) / 2
        queue_1.push(key_1)
        queue_2.push(key_2)
        return self.step_output(loss, batch, features_1)
