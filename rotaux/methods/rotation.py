"""The rotation-prediction auxiliary task.

Gidaris et al., "Unsupervised Representation Learning by Predicting Image Rotations" (ICLR 2018)
introduced the 4-way rotation task; Dangovski et al. (E-SSL, ICLR 2022) and Addepalli et al.
(ECCV 2022) add it to joint-embedding methods, where it speeds up convergence.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from rotaux.architecture import Architecture
from rotaux.data.rotation import NUM_ROTATIONS, RotationInput, RotationSource
from rotaux.errors import RotauxError
from rotaux.heads import MLP


class RotationAuxMixin:
    """Adds ``rotation_weight * CE(rotation_head(backbone(rotated)), k)`` to a method's loss.

    Mix it in before the base class (``class BYOL(RotationAuxMixin, MomentumMethod)``); it takes
    the rotation options, builds the head once the backbone exists, and tells the data module
    what to rotate (:meth:`rotation_input`). The rotated images pass through the online backbone
    in forward calls of their own, so in training BatchNorm normalises the method's views with
    their own batch statistics and the rotated images with theirs. The running mean and variance
    that eval-mode features use (kNN, linear probe and evaluation, export) are another matter:
    with ``rotation_running_stats=True`` (as in the code of E-SSL and of Addepalli et al.) every
    rotated batch updates them too, so they describe a mix of views and rotated images; with
    ``False`` the rotated batches are normalised with their batch statistics but leave the
    running statistics (and ``num_batches_tracked``) of the backbone untouched, so they describe
    the method's views alone. Target and teacher networks never see rotated images. With weight
    0 no head is built and no rotation work is done (the data module then produces no rotation
    input).

    The three protocols of the literature:

    - ``rotation_source="crop"`` (default, E-SSL): a separate crop, rotated 4 times (or once at
      random with ``rotation_copies=1``); ``rotation_crop_size`` 96 on ImageNet keeps it cheap.
    - ``rotation_source="view"``: the first augmented view, rotated.
    - ``rotation_source="views"`` with ``rotation_copies=1`` (Addepalli et al. 2022, EffSSL's
      code): every large view gets one random rotation, each goes through the backbone on its
      own, and their cross-entropies add up: ``lambda * (CE(view 1) + CE(view 2))``.

    Args:
        rotation_weight: weight lambda of the rotation loss; 0 trains the plain method with no
            rotation head and no rotation work. The default 0.4 is E-SSL's (Dangovski et al.,
            2022); Addepalli et al. use 0.1 with ``rotation_source views``.
        rotation_hidden_dim: hidden width of the rotation head (2048 in both papers).
        rotation_num_layers: linear layers of the rotation head (2: Linear-BN-ReLU-Linear).
        rotation_source: what is rotated: ``crop``, ``view`` or ``views`` (see above).
        rotation_copies: 4 rotated copies of every image (all of 0/90/180/270), or 1 random
            rotation per image.
        rotation_crop_size: side of the separate rotation crop; ``None`` uses the data module's
            ``image_size``. E-SSL uses 96 on ImageNet.
        rotation_crop_scale: area range of the rotation crop; ``None`` uses the first view's.
            E-SSL's ImageNet setting is (0.05, 0.14).
        rotation_running_stats: let the rotated batches update the running mean and variance
            of the backbone's BatchNorm layers (see above); ``False`` keeps them out. On the CPU
            efficiency preset (BYOL, 2 seeds, 2 epochs) keeping them out lowered linear accuracy
            by 0.48 points after epoch 1 and changed kNN and linear accuracy by at most 0.14
            after epoch 2: the default follows the E-SSL and EffSSL code.
    """

    def __init__(
        self,
        rotation_weight: float = 0.4,
        rotation_hidden_dim: int = 2048,
        rotation_num_layers: int = 2,
        rotation_source: RotationSource = "crop",
        rotation_copies: Literal[1, 4] = 4,
        rotation_crop_size: int | None = None,
        rotation_crop_scale: tuple[float, float] | None = None,
        rotation_running_stats: bool = True,
        **base_options: Any,
    ) -> None:
        super().__init__(**base_options)
        if rotation_weight < 0:
            raise RotauxError(
                f"rotation_weight must be >= 0 (0 trains the plain baseline), got "
                f"{rotation_weight}."
            )
        if rotation_source not in ("crop", "view", "views"):
            raise RotauxError(
                f"rotation_source must be crop, view or views, got {rotation_source!r}."
            )
        if rotation_copies not in (1, NUM_ROTATIONS):
            raise RotauxError(f"rotation_copies must be 1 or 4, got {rotation_copies}.")
        self.rotation_weight = rotation_weight
        self.rotation_source = rotation_source
        self.rotation_copies = rotation_copies
        self.rotation_crop_size = rotation_crop_size
        self.rotation_crop_scale = rotation_crop_scale
        self.rotation_running_stats = rotation_running_stats
        self.rotation_head = (
            MLP(self.num_features, rotation_hidden_dim, NUM_ROTATIONS, rotation_num_layers)
            if rotation_weight > 0
            else None
        )

    @property
    def uses_rotation(self) -> bool:
        return self.rotation_head is not None

    def rotation_input(self) -> RotationInput | None:
        """What the data module must rotate, or ``None`` when the auxiliary is off."""
        if not self.uses_rotation:
            return None
        return RotationInput(
            source=self.rotation_source,
            copies=self.rotation_copies,
            crop_size=self.rotation_crop_size,
            crop_scale=self.rotation_crop_scale,
            views=self.num_global_views,
        )

    def rotation_loss(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the rotation head on rotated ``images``, summed over the separately
        rotated groups (one per rotated view for ``views``, else one); logs loss and accuracy."""
        groups = self.rotation_input().groups
        loss = images.new_zeros((), dtype=torch.float32)
        correct = images.new_zeros((), dtype=torch.float32)
        statistics = (
            nullcontext() if self.rotation_running_stats else batch_statistics_only(self.backbone)
        )
        with statistics:
            for group_images, group_labels in zip(
                images.chunk(groups), labels.chunk(groups), strict=True
            ):
                logits = self.rotation_head(self.backbone(group_images)).float()
                loss = loss + F.cross_entropy(logits, group_labels)
                correct = correct + (logits.argmax(dim=-1) == group_labels).float().sum()
        self.log_dict({"train/rot_loss": loss, "train/rot_acc": correct / len(labels)})
        return loss

    def total_loss(self, ssl_loss: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        loss = super().total_loss(ssl_loss, batch)
        if self.rotation_head is None:
            return loss
        if "rotation" not in batch:
            raise RotauxError(
                "rotation_weight > 0 but the batch carries no rotated images. The data module "
                "makes them when it is set up by a Trainer together with this model."
            )
        return loss + self.rotation_weight * self.rotation_loss(
            batch["rotation"], batch["rotation_labels"]
        )

    def architecture(self) -> Architecture:
        architecture = super().architecture()
        return Architecture(architecture.method, architecture.backbone, self.uses_rotation)


@contextmanager
def batch_statistics_only(module: nn.Module) -> Iterator[None]:
    """Within the block, the BatchNorm layers of ``module`` that keep running statistics
    normalise a training-mode forward pass with its batch statistics, as usual, but leave
    ``running_mean``, ``running_var`` and ``num_batches_tracked`` untouched.

    It switches off ``track_running_stats`` for the block, which makes torch pass no running
    statistics to the normalisation kernel (for ``SyncBatchNorm`` too, synchronised or not).
    Setting the momentum to 0 instead would still count the batch in ``num_batches_tracked``
    (the averaging factor of ``momentum=None`` layers) and would turn the running statistics
    into NaN on a non-finite batch (``0 * NaN``). Eval-mode passes are unaffected.
    """
    norms = [
        layer
        for layer in module.modules()
        if isinstance(layer, _BatchNorm) and layer.track_running_stats
    ]
    for norm in norms:
        norm.track_running_stats = False
    try:
        yield
    finally:
        for norm in norms:
            norm.track_running_stats = True
