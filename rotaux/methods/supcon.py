"""SupCon: Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from rotaux.losses.supcon import supcon_loss
from rotaux.methods.base import SSLMethod
from rotaux.methods.multicrop import multicrop_features
from rotaux.methods.registry import register_method
from rotaux.methods.rotation import RotationAuxMixin
from rotaux.optim import OptimizerConfig


@register_method(
    "supcon",
    paper='Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020 (supervised)',
)
class SupCon(RotationAuxMixin, SSLMethod):
    """Supervised contrastive learning with the rotation auxiliary: a SUPERVISED reference.

    Unlike the other methods this one trains on the labels (``batch["label"]``): every view's
    projection is pulled towards all views of the samples with the same label in the global
    batch and pushed from the rest (:func:`~rotaux.losses.supcon.supcon_loss`), which gives an
    upper reference for the self-supervised methods under the same recipe. A sample labelled -1
    (unlabelled, as STL-10's unlabelled split or ``ImageFolder`` without classes give them) only
    has its own other views as positives, as in SimCLR; with no labels at all the loss is
    SimCLR's. Any number of views (multi-crop) may be given. Defaults are solo-learn's CIFAR
    recipe (``scripts/pretrain/cifar/supcon.yaml``): projector without BatchNorm 2048 -> 256,
    temperature 0.2, SGD with lr 0.4 for a batch of 256 and weight decay 1e-5.

    Args:
        optimizer: optimizer and schedule (this recipe's by default).
        proj_hidden_dim: hidden width of the projector.
        proj_output_dim: output width of the projector (the embedding that is compared).
        temperature: softmax temperature of the contrastive loss.
    """

    def __init__(
        self,
        optimizer: OptimizerConfig = OptimizerConfig(name="sgd", lr=0.4, weight_decay=1e-5),
        proj_hidden_dim: int = 2048,
        proj_output_dim: int = 256,
        temperature: float = 0.2,
        **base_options: Any,
    ) -> None:
        super().__init__(optimizer=optimizer, **base_options)
        self.projector = nn.Sequential(
            nn.Linear(self.num_features, proj_hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(proj_hidden_dim, proj_output_dim),
        )
        self.temperature = temperature

    def training_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        views = batch["views"]
        features = multicrop_features(self.backbone, views)
        projections = self.projector(features).chunk(len(views))
        loss = supcon_loss(list(projections), batch["label"], self.temperature)
        return self.step_output(loss, batch, features[: len(views[0])])
