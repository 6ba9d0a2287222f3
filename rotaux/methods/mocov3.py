"""MoCo v3: Chen, Xie & He, "An Empirical Study of Training Self-Supervised Vision Transformers",
ICCV 2021."""

from __future__ import annotations

from typing import Any, Literal

import torch

from rotaux.backbones import ResNet, WideResNet
from rotaux.errors import RotauxError
from rotaux.heads import MLP
from rotaux.losses.mocov3 import mocov3_loss
from rotaux.methods.momentum import MomentumMethod
from rotaux.methods.registry import register_method
from rotaux.methods.rotation import RotationAuxMixin
from rotaux.optim import OptimizerConfig


@register_method(
    "mocov3",
    paper='Chen, Xie & He, "An Empirical Study of Training Self-Supervised Vision Transformers", '
    "ICCV 2021",
)
class MoCoV3(RotationAuxMixin, MomentumMethod):
    """MoCo v3 with the rotation auxiliary.

    The query encoder (backbone, projector, predictor) predicts the momentum encoder's
    (backbone + projector) key of the other view; every other image's key in the global batch is
    a negative (:func:`~rotaux.losses.mocov3.mocov3_loss`, symmetrised by adding both directions
    as in the paper's Algorithm 1). No queue. The momentum encoder follows a cosine schedule
    from ``base_momentum`` to 1 and never sees the rotated copies.

    Heads are the paper's: MLPs with BatchNorm after every layer (the last without affine
    parameters), a 3-layer projector and 2-layer predictor for ViTs, a 2-layer projector and a
    predictor without the final BatchNorm for CNNs (``head_style`` ``auto`` picks by backbone).
    ``freeze_patch_embed`` keeps a ViT's random patch projection fixed, the paper's fix for the
    instability of ViT training (Sec. 4.2).

    Defaults are solo-learn's CIFAR recipe (``scripts/pretrain/cifar/mocov3.yaml``): heads
    4096 -> 256, predictor hidden 4096, temperature 0.2, momentum 0.99 -> 1.0, LARS with lr 0.3 for
    a batch of 256, eta 0.02 and weight decay 1e-6. The paper's ViT recipe (AdamW, lr 1.5e-4 per
    256 images, weight decay 0.1, 40 warm-up epochs, frozen patch projection) is in
    ``configs/imagenet100/mocov3_vit.yaml``.

    Args:
        optimizer: optimizer and schedule (this recipe's by default).
        proj_hidden_dim: hidden width of the projector.
        proj_output_dim: output width of projector and predictor.
        pred_hidden_dim: hidden width of the predictor.
        temperature: softmax temperature of the contrastive loss.
        head_style: ``vit`` or ``cnn`` heads (see above); ``auto`` takes ``cnn`` for ResNets and
            WideResNets and ``vit`` for every other backbone.
        freeze_patch_embed: keep the ViT's patch projection at its random initialisation.
    """

    def __init__(
        self,
        optimizer: OptimizerConfig = OptimizerConfig(lr=0.3, weight_decay=1e-6),
        proj_hidden_dim: int = 4096,
        proj_output_dim: int = 256,
        pred_hidden_dim: int = 4096,
        temperature: float = 0.2,
        head_style: Literal["auto", "cnn", "vit"] = "auto",
        freeze_patch_embed: bool = False,
        **base_options: Any,
    ) -> None:
        super().__init__(optimizer=optimizer, **base_options)
        if head_style == "auto":
            cnn = isinstance(self.backbone_config, ResNet | WideResNet)
            head_style = "cnn" if cnn else "vit"
        projector_layers = 2 if head_style == "cnn" else 3
        self.projector = MLP(
            self.num_features,
            proj_hidden_dim,
            proj_output_dim,
            num_layers=projector_layers,
            last_batch_norm=True,
        )
        self.predictor = MLP(
            proj_output_dim,
            pred_hidden_dim,
            proj_output_dim,
            last_batch_norm=head_style == "vit",
        )
        if freeze_patch_embed:
            patch_embed = getattr(self.backbone, "patch_embed", None)
            if patch_embed is None:
                raise RotauxError(
                    "freeze_patch_embed fixes a ViT's patch projection, and this backbone has "
                    "none; use a ViT backbone or set --model.freeze_patch_embed false."
                )
            patch_embed.requires_grad_(False)
        self.momentum_backbone = self.momentum_copy(self.backbone)
        self.momentum_projector = self.momentum_copy(self.projector)
        self.temperature = temperature

    def query(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Backbone features and predictions of the query encoder."""
        features = self.backbone(images)
        return features, self.predictor(self.projector(features))

    @torch.no_grad()
    def key(self, images: torch.Tensor) -> torch.Tensor:
        """Projections of the momentum encoder, without gradient."""
        return self.momentum_projector(self.momentum_backbone(images))

    def training_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        view_1, view_2 = batch["views"][:2]
        features_1, query_1 = self.query(view_1)
        _, query_2 = self.query(view_2)
        loss = mocov3_loss(query_1, self.key(view_2), self.temperature) + mocov3_loss(
            query_2, self.key(view_1), self.temperature
        )
        return self.step_output(loss, batch, features_1)
