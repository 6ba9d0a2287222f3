"""NNBYOL: BYOL (Grill et al., NeurIPS 2020) regressing onto nearest neighbours from a support
set, as in Dwibedi et al., "With a Little Help from My Friends: Nearest-Neighbor Contrastive
Learning of Visual Representations", ICCV 2021 (solo-learn's ``nnbyol``)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from rotaux.losses.nnbyol import nnbyol_loss
from rotaux.losses.nnclr import nearest_neighbours
from rotaux.methods.byol import BYOL
from rotaux.methods.registry import register_method
from rotaux.queue import FeatureQueue


@register_method(
    "nnbyol",
    paper='Dwibedi et al., "With a Little Help from My Friends" (NN support set), ICCV 2021, '
    'on Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020',
)
class NNBYOL(BYOL):
    """NNBYOL with the rotation auxiliary (BYOL's networks, rotation options and heads).

    Each view's target projection (EMA backbone + projector, L2-normalised) is replaced by its
    nearest neighbour in a support set of target projections from past steps, and the other
    view's online prediction regresses that neighbour (:func:`~rotaux.losses.nnbyol.nnbyol_loss`).
    The support set takes the first view's normalised target projections from every rank after
    each optimizer step (:mod:`rotaux.staging`) and is a buffer saved in checkpoints; the targets
    never see the rotated copies.
    Defaults are solo-learn's CIFAR recipe (``scripts/pretrain/cifar/nnbyol.yaml``): projector
    4096 -> 256, predictor hidden 4096, support set 65536, EMA momentum 0.99 -> 1.0, LARS with lr
    1.0 for a batch of 256, eta 0.02 and weight decay 1e-5 (BYOL's defaults here).

    Args:
        queue_size: number of target projections in the support set.
    """

    def __init__(self, queue_size: int = 65536, **base_options: Any) -> None:
        super().__init__(**base_options)
        self.support_set = FeatureQueue(queue_size, self.predictor.out_dim)

    def training_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        view_1, view_2 = batch["views"]
        features_1, prediction_1 = self.online(view_1)
        _, prediction_2 = self.online(view_2)
        target_1 = F.normalize(self.target(view_1).float(), dim=-1)
        target_2 = F.normalize(self.target(view_2).float(), dim=-1)
        support = self.support_set.rows
        loss = nnbyol_loss(
            prediction_1,
            prediction_2,
            nearest_neighbours(target_1, support),
            nearest_neighbours(target_2, support),
        )
        self.support_set.push(target_1)
        return self.step_output(loss, batch, features_1)
