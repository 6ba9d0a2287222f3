"""ReSSL: Zheng et al., "ReSSL: Relational Self-Supervised Learning with Weak Augmentation",
NeurIPS 2021."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rotaux.losses.ressl import ressl_loss
from rotaux.methods.momentum import MomentumMethod
from rotaux.methods.registry import register_method
from rotaux.methods.rotation import RotationAuxMixin
from rotaux.optim import OptimizerConfig
from rotaux.queue import FeatureQueue


@register_method(
    "ressl",
    paper='Zheng et al., "ReSSL: Relational Self-Supervised Learning with Weak Augmentation", '
    "NeurIPS 2021",
)
class ReSSL(RotationAuxMixin, MomentumMethod):
    """ReSSL with the rotation auxiliary.

    The student (backbone + projector) sees the strongly augmented first view; the teacher, an
    EMA of the student, sees the weakly augmented second view (list the strong augmentation
    first in ``--data.augmentations``, as the recipes do). Both projections are related to a
    queue of past teacher projections by a softmax over cosine similarities, the teacher's
    sharpened by a lower temperature, and the student learns the teacher's relation
    (:func:`~rotaux.losses.ressl.ressl_loss`). The queue takes the teacher's projections of every
    rank after the loss and is a buffer saved in checkpoints. Defaults are solo-learn's CIFAR
    recipe (``scripts/pretrain/cifar/ressl.yaml`` and its method defaults): projector without
    BatchNorm 4096 -> 256, student temperature 0.1, teacher temperature 0.04 (both the paper's),
    queue 65536, EMA momentum 0.99 -> 1.0, SGD with lr 0.05 for a batch of 256 and weight decay
    1e-4.

    Args:
        optimizer: optimizer and schedule (this recipe's by default).
        proj_hidden_dim: hidden width of the projector.
        proj_output_dim: output width of the projector (the embedding that is related).
        temperature: softmax temperature of the student's relation.
        teacher_temperature: softmax temperature of the teacher's relation (sharper).
        queue_size: number of past teacher projections the relations are over.
    """

    def __init__(
        self,
        optimizer: OptimizerConfig = OptimizerConfig(name="sgd", lr=0.05, weight_decay=1e-4),
        proj_hidden_dim: int = 4096,
        proj_output_dim: int = 256,
        temperature: float = 0.1,
        teacher_temperature: float = 0.04,
        queue_size: int = 65536,
        **base_options: Any,
    ) -> None:
        super().__init__(optimizer=optimizer, **base_options)
        self.projector = nn.Sequential(
            nn.Linear(self.num_features, proj_hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(proj_hidden_dim, proj_output_dim),
        )
        self.teacher_backbone = self.momentum_copy(self.backbone)
        self.teacher_projector = self.momentum_copy(self.projector)
        self.temperature = temperature
        self.teacher_temperature = teacher_temperature
        self.queue = FeatureQueue(queue_size, proj_output_dim)

    @torch.no_grad()
    def teacher(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised projections of the teacher, without gradient."""
        projection = self.teacher_projector(self.teacher_backbone(images))
        return F.normalize(projection.float(), dim=-1)

    def training_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        strong, weak = batch["views"]
        features = self.backbone(strong)
        teacher = self.teacher(weak)
        loss = ressl_loss(
            self.projector(features),
            teacher,
            self.queue.rows,
            self.temperature,
            self.teacher_temperature,
        )
        self.queue.push(teacher)
        return self.step_output(loss, batch, features)
