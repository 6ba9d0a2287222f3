"""DINO: Caron et al., "Emerging Properties in Self-Supervised Vision Transformers", ICCV 2021
(self-distillation with no labels; here with ResNet backbones, as in its ResNet-50 results)."""

from __future__ import annotations

from typing import Any

import torch

from rotaux.heads import DINOHead
from rotaux.losses.dino import DINOLoss, teacher_temperature
from rotaux.methods.momentum import MomentumMethod
from rotaux.methods.multicrop import check_large_crops, multicrop_features
from rotaux.methods.registry import register_method
from rotaux.methods.rotation import RotationAuxMixin
from rotaux.optim import OptimizerConfig


@register_method(
    "dino",
    paper='Caron et al., "Emerging Properties in Self-Supervised Vision Transformers", ICCV 2021',
)
class DINO(RotationAuxMixin, MomentumMethod):
    """DINO with the rotation auxiliary.

    The student (backbone + DINO head) sees every crop and learns to match, for every other
    crop, the teacher's centred and sharpened distribution over the prototypes of each large
    crop. The teacher (backbone + head) is an EMA of the student and sees only the first
    ``num_large_crops`` views; it never sees the rotated copies. The center (a buffer of the
    loss, saved in checkpoints) follows the teacher's mean output over all ranks, and the teacher
    temperature can warm up linearly over the first epochs as a function of the epoch, so both
    are exact after a resume. The head's last layer gets no gradient during the first
    ``freeze_last_layer_epochs`` epochs. Defaults are solo-learn's CIFAR recipe
    (``scripts/pretrain/cifar/dino.yaml`` and its DINO defaults): head 2048 -> 256 -> 4096
    prototypes without BatchNorm, student temperature 0.1, teacher temperature 0.07 from the
    first epoch (solo-learn's ``warmup_teacher_temperature_epochs`` default is 0 in
    ``solo/methods/dino.py``; 50 epochs from 0.04 was the default of its older argparse
    interface, and the DINO paper warms 0.04 -> 0.07 over 30 epochs for ViTs: set
    ``warmup_teacher_temperature_epochs`` for either), center momentum 0.9, last layer frozen
    for 1 epoch, EMA momentum 0.9995 -> 1.0, LARS with lr 0.3 for a batch of 256, eta 0.02 and
    weight decay 1e-6 (the paper's ResNet-50 recipe is LARS too, with 65536 prototypes on
    ImageNet).

    Args:
        optimizer: optimizer and schedule (this recipe's by default).
        base_momentum: EMA momentum of the teacher at the first step.
        proj_hidden_dim: hidden width of the head's MLP.
        proj_output_dim: width of the head's L2-normalised bottleneck.
        num_prototypes: output width of the head.
        head_batch_norm: BatchNorm in the head's MLP (the official ``use_bn_in_head``).
        student_temperature: temperature of the student softmax.
        teacher_temperature: teacher temperature after the warm-up.
        warmup_teacher_temperature: teacher temperature at epoch 0 of a warm-up.
        warmup_teacher_temperature_epochs: epochs of the linear teacher-temperature warm-up
            (0: ``teacher_temperature`` throughout).
        center_momentum: EMA momentum of the teacher center.
        freeze_last_layer_epochs: epochs during which the head's last layer gets no gradient.
        num_large_crops: how many leading views are large crops seen by the teacher.
    """

    def __init__(
        self,
        optimizer: OptimizerConfig = OptimizerConfig(lr=0.3, weight_decay=1e-6),
        base_momentum: float = 0.9995,
        proj_hidden_dim: int = 2048,
        proj_output_dim: int = 256,
        num_prototypes: int = 4096,
        head_batch_norm: bool = False,
        student_temperature: float = 0.1,
        teacher_temperature: float = 0.07,
        warmup_teacher_temperature: float = 0.04,
        warmup_teacher_temperature_epochs: int = 0,
        center_momentum: float = 0.9,
        freeze_last_layer_epochs: int = 1,
        num_large_crops: int = 2,
        **base_options: Any,
    ) -> None:
        super().__init__(optimizer=optimizer, base_momentum=base_momentum, **base_options)
        self.head = DINOHead(
            self.num_features,
            proj_hidden_dim,
            proj_output_dim,
            num_prototypes,
            batch_norm=head_batch_norm,
        )
        self.teacher_backbone = self.momentum_copy(self.backbone)
        self.teacher_head = self.momentum_copy(self.head)
        self.dino_loss = DINOLoss(num_prototypes, student_temperature, center_momentum)
        self.teacher_temperature = teacher_temperature
        self.warmup_teacher_temperature = warmup_teacher_temperature
        self.warmup_teacher_temperature_epochs = warmup_teacher_temperature_epochs
        self.freeze_last_layer_epochs = freeze_last_layer_epochs
        self.num_large_crops = num_large_crops

    @torch.no_grad()
    def teacher(self, views: list[torch.Tensor]) -> list[torch.Tensor]:
        """Teacher outputs of each of ``views``, without gradient."""
        features = multicrop_features(self.teacher_backbone, views)
        return list(self.teacher_head(features).chunk(len(views)))

    @property
    def num_global_views(self) -> int:
        return self.num_large_crops

    def current_teacher_temperature(self) -> float:
        return teacher_temperature(
            self.current_epoch,
            self.warmup_teacher_temperature,
            self.teacher_temperature,
            self.warmup_teacher_temperature_epochs,
        )

    def training_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        views = batch["views"]
        check_large_crops("DINO", views, self.num_large_crops)
        features = multicrop_features(self.backbone, views)
        student = list(self.head(features).chunk(len(views)))
        temperature = self.current_teacher_temperature()
        loss = self.dino_loss(student, self.teacher(views[: self.num_large_crops]), temperature)
        return self.step_output(loss, batch, features[: len(views[0])])

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        self.log("train/teacher_temperature", self.current_teacher_temperature())

    def on_after_backward(self) -> None:
        super().on_after_backward()
        if self.current_epoch < self.freeze_last_layer_epochs:
            self.head.last_layer.weight.grad = None
