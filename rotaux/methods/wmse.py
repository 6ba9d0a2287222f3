"""W-MSE: Ermolov et al., "Whitening for Self-Supervised Representation Learning", ICML 2021."""

from __future__ import annotations

from typing import Any

import torch

from rotaux.data.sampler import mix_seed
from rotaux.errors import RotauxError
from rotaux.heads import MLP
from rotaux.losses.wmse import wmse_loss
from rotaux.methods.base import SSLMethod
from rotaux.methods.multicrop import multicrop_features
from rotaux.methods.registry import register_method
from rotaux.methods.rotation import RotationAuxMixin
from rotaux.optim import OptimizerConfig


@register_method(
    "wmse",
    paper='Ermolov et al., "Whitening for Self-Supervised Representation Learning", ICML 2021',
)
class WMSE(RotationAuxMixin, SSLMethod):
    """W-MSE with the rotation auxiliary.

    The projections of every view are whitened (Cholesky) within random groups of
    ``whitening_size`` samples of the global batch, L2-normalised, and the views of each sample
    are pulled together by a mean squared error (:func:`~rotaux.losses.wmse.wmse_loss`); the
    whitening keeps the embeddings from collapsing without negatives. Every view enters the
    loss, all pairs of them (the paper's W-MSE 4 takes 4 views). The groups are drawn from a
    seed kept in checkpoints and the global step, alike on every rank and after a resume.
    Defaults are solo-learn's CIFAR recipe (``scripts/pretrain/cifar/wmse.yaml`` and its method
    defaults): projector 1024 -> 64, whitening groups of 128, one whitening iteration, no
    shrinkage, Adam with lr 2e-3 for a batch of 256 and weight decay 1e-6 (decoupled here, as
    AdamW: at 1e-6 the two differ by a negligible amount).

    Args:
        optimizer: optimizer and schedule (this recipe's by default).
        proj_hidden_dim: hidden width of the projector.
        proj_output_dim: output width of the projector (the embedding that is whitened); below
            ``whitening_size``.
        whitening_size: samples per whitening group; it must divide the global batch.
        whitening_iters: whitening draws (groupings) per step, averaged.
        whitening_eps: shrinkage of the covariance towards the identity before whitening.
    """

    def __init__(
        self,
        optimizer: OptimizerConfig = OptimizerConfig(name="adamw", lr=2e-3, weight_decay=1e-6),
        proj_hidden_dim: int = 1024,
        proj_output_dim: int = 64,
        whitening_size: int = 128,
        whitening_iters: int = 1,
        whitening_eps: float = 0.0,
        **base_options: Any,
    ) -> None:
        super().__init__(optimizer=optimizer, **base_options)
        if whitening_size <= proj_output_dim or whitening_iters < 1:
            raise RotauxError(
                f"W-MSE whitens groups of whitening_size={whitening_size} embeddings of "
                f"proj_output_dim={proj_output_dim} dimensions, which needs more embeddings than "
                "dimensions, and whitening_iters >= 1 (got "
                f"{whitening_iters}): raise --model.whitening_size or lower "
                "--model.proj_output_dim."
            )
        self.projector = MLP(self.num_features, proj_hidden_dim, proj_output_dim)
        self.whitening_size = whitening_size
        self.whitening_iters = whitening_iters
        self.whitening_eps = whitening_eps
        self.register_buffer("whitening_seed", torch.randint(0, 2**62, ()))
        self._seed_value: int | None = None

    def training_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        views = batch["views"]
        features = multicrop_features(self.backbone, views)
        projections = self.projector(features).chunk(len(views))
        if self._seed_value is None:
            # read once: reading a device buffer every step would make the host wait
            self._seed_value = int(self.whitening_seed)
        # drawn on the device: a permutation copied from the host would make the host wait
        generator = torch.Generator(device=features.device)
        generator.manual_seed(mix_seed(self._seed_value, self.global_step))
        loss = wmse_loss(
            list(projections),
            self.whitening_size,
            generator,
            self.whitening_iters,
            self.whitening_eps,
        )
        return self.step_output(loss, batch, features[: len(views[0])])

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._seed_value = None
