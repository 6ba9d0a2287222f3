"""NNSiam: SimSiam (Chen & He, CVPR 2021) against nearest neighbours from a support set, as in
Dwibedi et al., "With a Little Help from My Friends: Nearest-Neighbor Contrastive Learning of
Visual Representations", ICCV 2021 (solo-learn's ``nnsiam``)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from rotaux.losses.nnclr import nearest_neighbours
from rotaux.losses.nnsiam import nnsiam_loss
from rotaux.methods.registry import register_method
from rotaux.methods.simsiam import SimSiam
from rotaux.queue import FeatureQueue


@register_method(
    "nnsiam",
    paper='Dwibedi et al., "With a Little Help from My Friends" (NN support set), ICCV 2021, '
    'on Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021',
)
class NNSiam(SimSiam):
    """NNSiam with the rotation auxiliary (SimSiam's networks, optimizer, fixed predictor rate
    and rotation options).

    Each view's projection (L2-normalised) is replaced by its nearest neighbour in a support set
    of projections from past steps, which the other view's prediction must match in cosine
    (:func:`~rotaux.losses.nnsiam.nnsiam_loss`); the neighbour takes the place of SimSiam's
    stop-gradient projection. The support set takes the first view's normalised projections from
    every rank after each optimizer step (:mod:`rotaux.staging`) and is a buffer saved in
    checkpoints. Defaults are solo-learn's
    CIFAR recipe (``scripts/pretrain/cifar/nnsiam.yaml``): projector 2048 -> 2048 ending in
    BatchNorm, predictor hidden width 4096 (SimSiam's is 512), support set 65536, SGD with lr 0.5
    for a batch of 256 and weight decay 1e-5, the predictor at a fixed rate (solo-learn's
    ``static_lr``).

    Args:
        pred_hidden_dim: hidden width of the predictor.
        queue_size: number of projections in the support set.
    """

    def __init__(
        self, pred_hidden_dim: int = 4096, queue_size: int = 65536, **base_options: Any
    ) -> None:
        super().__init__(pred_hidden_dim=pred_hidden_dim, **base_options)
        self.support_set = FeatureQueue(queue_size, self.predictor.out_dim)

    def training_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        view_1, view_2 = batch["views"]
        features_1, projection_1, prediction_1 = self.embed(view_1)
        _, projection_2, prediction_2 = self.embed(view_2)
        support = self.support_set.rows
        loss = nnsiam_loss(
            prediction_1,
            prediction_2,
            nearest_neighbours(projection_1, support),
            nearest_neighbours(projection_2, support),
        )
        self.support_set.push(F.normalize(projection_1.float(), dim=-1))
        return self.step_output(loss, batch, features_1)
