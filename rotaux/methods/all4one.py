"""All4One: Estepa et al., "All4One: Symbiotic Neighbour Contrastive Learning via Self-Attention
and Redundancy Reduction", ICCV 2023."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rotaux.errors import RotauxError
from rotaux.heads import MLP
from rotaux.losses.all4one import (
    centroid_contrast_loss,
    feature_contrast_loss,
    nearest_neighbour_sets,
    neighbour_slot_encoding,
)
from rotaux.losses.nnclr import nnclr_loss
from rotaux.methods.momentum import MomentumMethod
from rotaux.methods.registry import register_method
from rotaux.methods.rotation import RotationAuxMixin
from rotaux.optim import ParameterGroup
from rotaux.queue import FeatureQueue


@register_method(
    "all4one",
    paper='Estepa et al., "All4One: Symbiotic Neighbour Contrastive Learning via Self-Attention '
    'and Redundancy Reduction", ICCV 2023',
)
class All4One(RotationAuxMixin, MomentumMethod):
    """All4One with the rotation auxiliary.

    Three objectives on the online projections and predictions and on the momentum encoder's
    normalised projections (the targets, which never see the rotated copies):

    - neighbour contrast (NNCLR's, temperature ``temperature``): each target's nearest neighbour
      in the support set must pick out the other view's prediction in the global batch;
    - centroid contrast: the ``num_neighbours`` nearest neighbours of a view's target, plus a
      fixed per-slot encoding, go through a transformer encoder whose first output token is the
      view's centroid; the other view's sequence is shifted by one slot with the output of a
      second predictor in front (the official "shift operation"). Centroid and shifted centroid
      of the two views are contrasted in both directions (NT-Xent, ``centroid_temperature``);
    - feature contrast: redundancy reduction between the feature columns of the targets of one
      view and the online projections of the other over the global batch
      (:func:`~rotaux.losses.all4one.feature_contrast_loss`).

    The loss is ``neighbour_weight * neighbour + centroid_weight * centroid + feature_weight *
    feature``. The support set takes the first view's targets from every rank after each
    optimizer step (:mod:`rotaux.staging`) and is a buffer saved in checkpoints. The transformer
    trains at ``transformer_lr_scale`` times the learning rate.

    Defaults are solo-learn's CIFAR recipe (``scripts/pretrain/cifar/all4one.yaml`` with the
    method's code, which is the official code): 3-layer projector 2048 -> 256 ending in
    BatchNorm, predictors 4096 -> 256, support set 98304, 5 neighbours, a 3-layer transformer
    encoder with 8 heads, feed-forward width twice the projection and dropout 0.1, temperatures
    0.2 and 0.1, loss weights 0.5, 0.5 and 0.5 x 10 = 5, EMA momentum 0.99 -> 1.0, LARS with lr
    1.0 for a batch of 256, eta 0.02 and weight decay 1e-5, and the transformer at a tenth of the
    scaled, scheduled rate (the official code's 0.1 at its batch of 256).

    The transformer's dropout masks are drawn per rank, so under DDP they differ from the masks
    one process with the whole batch would draw (the same distribution); everything that mixes
    samples (support set, NT-Xent candidates, feature correlations) is over the global batch.

    Args:
        proj_hidden_dim: hidden width of the projector.
        proj_output_dim: output width of projector and predictors, the transformer's width.
        pred_hidden_dim: hidden width of both predictors.
        temperature: softmax temperature of the neighbour contrast.
        centroid_temperature: softmax temperature of the centroid contrast.
        queue_size: number of target projections in the support set.
        num_neighbours: neighbours summarised by each centroid.
        transformer_layers: layers of the centroid transformer encoder.
        transformer_heads: attention heads (must divide ``proj_output_dim``).
        transformer_dropout: dropout inside the transformer encoder.
        transformer_lr_scale: the transformer's learning rate as a fraction of the rest's.
        neighbour_weight: weight of the neighbour contrast.
        centroid_weight: weight of the centroid contrast.
        feature_weight: weight of the feature contrast.
    """

    slot_encoding: torch.Tensor

    def __init__(
        self,
        proj_hidden_dim: int = 2048,
        proj_output_dim: int = 256,
        pred_hidden_dim: int = 4096,
        temperature: float = 0.2,
        centroid_temperature: float = 0.1,
        queue_size: int = 98304,
        num_neighbours: int = 5,
        transformer_layers: int = 3,
        transformer_heads: int = 8,
        transformer_dropout: float = 0.1,
        transformer_lr_scale: float = 0.1,
        neighbour_weight: float = 0.5,
        centroid_weight: float = 0.5,
        feature_weight: float = 5.0,
        **base_options: Any,
    ) -> None:
        if proj_output_dim % transformer_heads:
            raise RotauxError(
                f"transformer_heads ({transformer_heads}) must divide proj_output_dim "
                f"({proj_output_dim}), the width of the centroid transformer."
            )
        if not 1 <= num_neighbours <= queue_size:
            raise RotauxError(
                f"num_neighbours must be between 1 and queue_size ({queue_size}), got "
                f"{num_neighbours}."
            )
        super().__init__(**base_options)
        self.projector = nn.Sequential(
            MLP(self.num_features, proj_hidden_dim, proj_output_dim, num_layers=3),
            nn.BatchNorm1d(proj_output_dim),
        )
        self.predictor = MLP(proj_output_dim, pred_hidden_dim, proj_output_dim)
        self.centroid_predictor = MLP(proj_output_dim, pred_hidden_dim, proj_output_dim)
        layer = nn.TransformerEncoderLayer(
            proj_output_dim,
            transformer_heads,
            dim_feedforward=2 * proj_output_dim,
            dropout=transformer_dropout,
            batch_first=True,
        )
        self.transformer = nn.TransformerEncoder(
            layer, transformer_layers, enable_nested_tensor=False
        )
        self.register_buffer(
            "slot_encoding",
            neighbour_slot_encoding(num_neighbours, proj_output_dim),
            persistent=False,
        )
        self.target_backbone = self.momentum_copy(self.backbone)
        self.target_projector = self.momentum_copy(self.projector)
        self.support_set = FeatureQueue(queue_size, proj_output_dim)
        self.temperature = temperature
        self.centroid_temperature = centroid_temperature
        self.num_neighbours = num_neighbours
        self.transformer_lr_scale = transformer_lr_scale
        self.neighbour_weight = neighbour_weight
        self.centroid_weight = centroid_weight
        self.feature_weight = feature_weight

    def parameter_groups(self) -> list[ParameterGroup]:
        named = list(self.named_parameters())
        transformer = [(name, param) for name, param in named if name.startswith("transformer.")]
        rest = [(name, param) for name, param in named if not name.startswith("transformer.")]
        return [
            ParameterGroup(rest),
            ParameterGroup(transformer, lr_scale=self.transformer_lr_scale),
        ]

    @torch.no_grad()
    def target(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised projection of the momentum encoder, without gradient."""
        return F.normalize(self.target_projector(self.target_backbone(images)).float(), dim=-1)

    def centroid(self, sequence: torch.Tensor) -> torch.Tensor:
        """The transformer's first output token for a ``(B, num_neighbours, D)`` sequence."""
        return self.transformer(sequence + self.slot_encoding)[:, 0]

    def training_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        view_1, view_2 = batch["views"]
        features_1 = self.backbone(view_1)
        projection_1, projection_2 = (
            self.projector(features_1),
            self.projector(self.backbone(view_2)),
        )
        prediction_1, prediction_2 = self.predictor(projection_1), self.predictor(projection_2)
        target_1, target_2 = self.target(view_1), self.target(view_2)
        support = self.support_set.rows
        neighbours_1 = nearest_neighbour_sets(target_1, support, self.num_neighbours)
        neighbours_2 = nearest_neighbour_sets(target_2, support, self.num_neighbours)

        neighbour = (
            nnclr_loss(neighbours_1[:, 0], prediction_2, self.temperature)
            + nnclr_loss(neighbours_2[:, 0], prediction_1, self.temperature)
        ) / 2
        centroid_1, centroid_2 = self.centroid(neighbours_1), self.centroid(neighbours_2)
        shifted_1 = self.centroid(self.shifted(projection_1, neighbours_1))
        shifted_2 = self.centroid(self.shifted(projection_2, neighbours_2))
        centroid = (
            centroid_contrast_loss(centroid_1, shifted_2, self.centroid_temperature)
            + centroid_contrast_loss(centroid_2, shifted_1, self.centroid_temperature)
        ) / 2
        feature = feature_contrast_loss(target_1, projection_1, target_2, projection_2)
        loss = (
            self.neighbour_weight * neighbour
            + self.centroid_weight * centroid
            + self.feature_weight * feature
        )
        self.log_dict(
            {
                "train/neighbour_loss": neighbour,
                "train/centroid_loss": centroid,
                "train/feature_loss": feature,
            }
        )
        self.support_set.push(target_1)
        return self.step_output(loss, batch, features_1)

    def shifted(self, projection: torch.Tensor, neighbours: torch.Tensor) -> torch.Tensor:
        """The neighbour sequence shifted one slot back, with the second predictor's output of
        ``projection`` in slot 0 and the farthest neighbour dropped."""
        prediction = self.centroid_predictor(projection).to(neighbours.dtype)
        return torch.cat([prediction[:, None], neighbours[:, :-1]], dim=1)
