"""SimSiam: Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021."""

from __future__ import annotations

from typing import Any

import torch

from rotaux.heads import MLP
from rotaux.losses.simsiam import simsiam_loss
from rotaux.methods.base import SSLMethod
from rotaux.methods.registry import register_method
from rotaux.methods.rotation import RotationAuxMixin
from rotaux.optim import OptimizerConfig, ParameterGroup


@register_method(
    "simsiam",
    paper='Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021',
)
class SimSiam(RotationAuxMixin, SSLMethod):
    """SimSiam with the rotation auxiliary.

    Each view's prediction regresses the other view's projection under a stop-gradient (no
    momentum encoder, no negatives). The projector is the paper's ImageNet one, three layers with
    a BatchNorm after the output, the predictor a bottleneck MLP. Defaults are solo-learn's CIFAR
    recipe (``scripts/pretrain/cifar/simsiam.yaml``): projector 2048 -> 2048, predictor hidden
    width 512, SGD with lr 0.5 for a batch of 256 and weight decay 1e-5. The predictor keeps the
    peak learning rate throughout, without warm-up or decay (the paper's Sec. 4.4 and
    solo-learn's ``static_lr``), unless ``fixed_predictor_lr`` is off.

    Args:
        optimizer: optimizer and schedule (this recipe's by default).
        proj_hidden_dim: hidden width of the projector.
        proj_output_dim: output width of projector and predictor.
        pred_hidden_dim: hidden (bottleneck) width of the predictor.
        fixed_predictor_lr: keep the predictor's learning rate constant.
    """

    def __init__(
        self,
        optimizer: OptimizerConfig = OptimizerConfig(name="sgd", lr=0.5, weight_decay=1e-5),
        proj_hidden_dim: int = 2048,
        proj_output_dim: int = 2048,
        pred_hidden_dim: int = 512,
        fixed_predictor_lr: bool = True,
        **base_options: Any,
    ) -> None:
        super().__init__(optimizer=optimizer, **base_options)
        self.fixed_predictor_lr = fixed_predictor_lr
        self.projector = MLP(
            self.num_features, proj_hidden_dim, proj_output_dim, num_layers=3, last_batch_norm=True
        )
        self.predictor = MLP(proj_output_dim, pred_hidden_dim, proj_output_dim)

    def parameter_groups(self) -> list[ParameterGroup]:
        named = list(self.named_parameters())
        predictor = [(name, param) for name, param in named if name.startswith("predictor.")]
        rest = [(name, param) for name, param in named if not name.startswith("predictor.")]
        return [ParameterGroup(rest), ParameterGroup(predictor, fixed_lr=self.fixed_predictor_lr)]

    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Backbone features, projections and predictions of ``images``."""
        features = self.backbone(images)
        projection = self.projector(features)
        return features, projection, self.predictor(projection)

    def training_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        view_1, view_2 = batch["views"]
        features_1, projection_1, prediction_1 = self.embed(view_1)
        _, projection_2, prediction_2 = self.embed(view_2)
        loss = simsiam_loss(prediction_1, prediction_2, projection_1, projection_2)
        return self.step_output(loss, batch, features_1)
