"""SwAV: Caron et al., "Unsupervised Learning of Visual Features by Contrasting Cluster
Assignments", NeurIPS 2020."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rotaux.distributed import rank, world_size
from rotaux.heads import MLP, Prototypes
from rotaux.losses.swav import sinkhorn, swav_loss
from rotaux.methods.base import SSLMethod
from rotaux.methods.multicrop import check_large_crops, multicrop_features
from rotaux.methods.registry import register_method
from rotaux.methods.rotation import RotationAuxMixin
from rotaux.optim import OptimizerConfig
from rotaux.queue import FeatureQueue


@register_method(
    "swav",
    paper='Caron et al., "Unsupervised Learning of Visual Features by Contrasting Cluster '
    'Assignments", NeurIPS 2020',
)
class SwAV(RotationAuxMixin, SSLMethod):
    """SwAV with the rotation auxiliary.

    Every crop's projection (L2-normalised) is scored against learnable prototypes; the large
    crops get soft cluster codes from Sinkhorn-Knopp over the global batch, and every other crop
    must predict them (swapped prediction). Multi-crop: ``batch["views"]`` may hold any number
    of crops, the first ``num_large_crops`` being the large ones that get codes. The prototypes
    are renormalised before every step and frozen for the first ``freeze_prototypes_epochs``
    epochs and the first ``freeze_prototypes_steps`` optimizer steps (the official code counts
    iterations: ``freeze_prototypes_niters``). From epoch ``queue_start_epoch`` on, once full, a
    queue of embeddings from past steps (per large crop, filled from every rank, saved in
    checkpoints) joins the Sinkhorn problem, so small batches still spread over the prototypes;
    each rank adds its share of the queue, so the codes are those of one process with the global
    batch and the whole queue. Defaults are
    solo-learn's CIFAR recipe (``scripts/pretrain/cifar/swav.yaml``): projector 2048 -> 128,
    3000 prototypes, temperature 0.1, Sinkhorn 3 iterations with epsilon 0.05, queue 3840 from
    epoch 50, prototypes frozen for 2 epochs, LARS with lr 0.6 for a batch of 256, eta 0.02 and
    weight decay 1e-6.

    Args:
        optimizer: optimizer and schedule (this recipe's by default).
        proj_hidden_dim: hidden width of the projector.
        proj_output_dim: output width of the projector (the embedding scored by the prototypes).
        num_prototypes: number of prototypes (clusters).
        temperature: softmax temperature of the swapped prediction.
        sinkhorn_iters: Sinkhorn-Knopp iterations.
        sinkhorn_epsilon: entropy regularisation of Sinkhorn-Knopp.
        queue_size: embeddings kept per large crop for the codes; 0 disables the queue.
        queue_start_epoch: first epoch whose codes use the queue (it fills from the start).
        freeze_prototypes_epochs: epochs during which the prototypes get no gradient.
        freeze_prototypes_steps: optimizer steps from the start during which the prototypes get
            no gradient (SwAV's and EffSSL's ``freeze_prototypes_niters``); both counts apply.
        num_large_crops: how many leading views are large crops that receive codes.
    """

    def __init__(
        self,
        optimizer: OptimizerConfig = OptimizerConfig(lr=0.6, weight_decay=1e-6),
        proj_hidden_dim: int = 2048,
        proj_output_dim: int = 128,
        num_prototypes: int = 3000,
        temperature: float = 0.1,
        sinkhorn_iters: int = 3,
        sinkhorn_epsilon: float = 0.05,
        queue_size: int = 3840,
        queue_start_epoch: int = 50,
        freeze_prototypes_epochs: int = 2,
        freeze_prototypes_steps: int = 0,
        num_large_crops: int = 2,
        **base_options: Any,
    ) -> None:
        super().__init__(optimizer=optimizer, **base_options)
        self.projector = MLP(self.num_features, proj_hidden_dim, proj_output_dim)
        self.prototypes = Prototypes(proj_output_dim, num_prototypes)
        self.temperature = temperature
        self.sinkhorn_iters = sinkhorn_iters
        self.sinkhorn_epsilon = sinkhorn_epsilon
        self.queue_start_epoch = queue_start_epoch
        self.freeze_prototypes_epochs = freeze_prototypes_epochs
        self.freeze_prototypes_steps = freeze_prototypes_steps
        self.num_large_crops = num_large_crops
        self.queues = nn.ModuleList(
            [
                FeatureQueue(queue_size, proj_output_dim, init="zeros")
                for _ in range(num_large_crops)
            ]
            if queue_size > 0
            else []
        )

    @property
    def num_global_views(self) -> int:
        return self.num_large_crops

    def embed(self, views: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Backbone features of the first view and L2-normalised projections of every view."""
        features = multicrop_features(self.backbone, views)
        embeddings = F.normalize(self.projector(features).float(), dim=-1)
        return features[: len(views[0])], list(embeddings.chunk(len(views)))

    @torch.no_grad()
    def codes(self, crop: int, scores: torch.Tensor) -> torch.Tensor:
        """Sinkhorn codes of large crop ``crop`` from its ``scores``, with this rank's share of
        that crop's queue once the queue is in use."""
        batch_size = len(scores)
        if (
            self.queues
            and self.current_epoch >= self.queue_start_epoch
            and self.queues[crop].is_full()
        ):
            queued = self.queues[crop].rows.tensor_split(world_size())[rank()]
            scores = torch.cat([scores, self.prototypes(queued)])
        return sinkhorn(scores, self.sinkhorn_iters, self.sinkhorn_epsilon)[:batch_size]

    def training_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        views = batch["views"]
        check_large_crops("SwAV", views, self.num_large_crops)
        features, embeddings = self.embed(views)
        scores = [self.prototypes(embedding) for embedding in embeddings]
        codes = [self.codes(crop, scores[crop]) for crop in range(self.num_large_crops)]
        loss = swav_loss(scores, codes, self.temperature)
        for queue, embedding in zip(self.queues, embeddings, strict=False):
            queue.push(embedding)
        return self.step_output(loss, batch, features)

    def on_train_batch_start(self, batch: dict, batch_idx: int) -> None:
        # before every step, outside the (DDP-wrapped) training step, as in the official code
        self.prototypes.normalize_()

    def on_after_backward(self) -> None:
        super().on_after_backward()
        if (
            self.current_epoch < self.freeze_prototypes_epochs
            or self.global_step < self.freeze_prototypes_steps
        ):
            self.prototypes.weight.grad = None
