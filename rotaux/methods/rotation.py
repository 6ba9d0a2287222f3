"""The rotation-prediction auxiliary task.

Gidaris et al., "Unsupervised Representation Learning by Predicting Image Rotations" (ICLR 2018)
introduced the 4-way rotation task; Dangovski et al. (E-SSL, ICLR 2022) and Addepalli et al.
(ECCV 2022) add it to joint-embedding methods, where it speeds up convergence.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from rotaux.errors import RotauxError
from rotaux.heads import MLP

NUM_ROTATIONS = 4


class RotationAuxMixin:
    """Adds ``rotation_weight * CE(rotation_head(backbone(rotated)), k)`` to a method's loss.

    Mix it in before the base class (``class BYOL(RotationAuxMixin, MomentumMethod)``) and call
    :meth:`setup_rotation_head` in ``__init__`` after the backbone exists. The rotated copies pass
    through the online backbone in a forward call of their own, so BatchNorm statistics of the
    method's views are not mixed with those of rotated images. With weight 0 no head is built and
    no rotation work is done (the data module then produces no rotation input).
    """

    def setup_rotation_head(self, weight: float, hidden_dim: int, num_layers: int) -> None:
        """Build the rotation head: an MLP on pooled backbone features with 4 outputs."""
        if weight < 0:
            raise RotauxError(
                f"rotation_weight must be >= 0 (0 trains the plain baseline), got {weight}."
            )
        self.rotation_weight = weight
        self.rotation_head = (
            MLP(self.backbone.num_features, hidden_dim, NUM_ROTATIONS, num_layers)
            if weight > 0
            else None
        )

    @property
    def uses_rotation(self) -> bool:
        return self.rotation_head is not None

    def rotation_loss(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the rotation head on rotated ``images``; logs loss and accuracy."""
        logits = self.rotation_head(self.backbone(images)).float()
        loss = F.cross_entropy(logits, labels)
        accuracy = (logits.argmax(dim=-1) == labels).float().mean()
        self.log_dict({"train/rot_loss": loss, "train/rot_acc": accuracy})
        return loss

    def total_loss(self, ssl_loss: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        loss = super().total_loss(ssl_loss, batch)
        if self.rotation_head is None:
            return loss
        if "rotation" not in batch:
            raise RotauxError(
                "rotation_weight > 0 but the batch carries no rotated images; let the data "
                "module follow the model (data.with_rotation: null) or set it to true."
            )
        return loss + self.rotation_weight * self.rotation_loss(
            batch["rotation"], batch["rotation_labels"]
        )
