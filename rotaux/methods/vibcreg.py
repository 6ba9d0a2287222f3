"""VIbCReg: Lee & Aune, "VIbCReg: Variance-Invariance-better-Covariance Regularization for
Self-Supervised Learning on Time Series", 2021 (arXiv:2109.00783)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from rotaux.distributed import all_reduce_sum, world_size
from rotaux.losses.vibcreg import vibcreg_loss
from rotaux.methods.base import SSLMethod
from rotaux.methods.registry import register_method
from rotaux.methods.rotation import RotationAuxMixin
from rotaux.optim import OptimizerConfig


class IterNorm(nn.Module):
    """Iterative normalisation (Huang et al., "Iterative Normalization: Beyond Standardization
    towards Efficient Whitening", CVPR 2019), the last layer of VIbCReg's projector.

    The ``num_features`` features are split into groups of consecutive features (about
    ``num_features / num_groups`` each, as solo-learn sizes them). In training each group is
    centred and multiplied by ``Sigma^-1/2``, approximated by ``iterations`` Newton steps on the
    trace-normalised covariance ``Sigma + eps I`` of the batch, so its features come out nearly
    decorrelated with unit variance; the batch mean and whitening matrix are those of the global
    batch under DDP (all-reduced with gradient, like SyncBatchNorm). Running averages of both
    (``momentum``) whiten in evaluation mode. A per-feature affine transform follows. Computed in
    float32 with autocast off.

    Args:
        num_features: width of the input.
        num_groups: about how many groups to whiten separately.
        iterations: Newton iterations (5 in the paper and solo-learn).
        eps: added to the covariance's diagonal.
        momentum: weight of the current batch in the running statistics.
    """

    running_mean: torch.Tensor
    running_whitening: torch.Tensor

    def __init__(
        self,
        num_features: int,
        num_groups: int = 64,
        iterations: int = 5,
        eps: float = 1e-5,
        momentum: float = 0.1,
    ) -> None:
        super().__init__()
        group_size = (num_features - 1) // num_groups + 1
        while num_features % group_size:
            group_size //= 2
        self.num_groups = num_features // group_size
        self.group_size = group_size
        self.iterations = iterations
        self.eps = eps
        self.momentum = momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(self.num_groups, group_size, 1))
        eye = torch.eye(group_size).expand(self.num_groups, group_size, group_size)
        self.register_buffer("running_whitening", eye.clone())

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        with torch.autocast(inputs.device.type, enabled=False):
            groups = inputs.float().T.reshape(self.num_groups, self.group_size, -1)
            if self.training:
                centred, whitening = self._batch_whitening(groups)
            else:
                centred, whitening = groups - self.running_mean, self.running_whitening
            whitened = (whitening @ centred).reshape(-1, len(inputs)).T
            return whitened * self.weight + self.bias

    def _batch_whitening(self, groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Centred groups and their whitening matrices; updates the running statistics."""
        count = groups.shape[2] * world_size()
        mean = all_reduce_sum(groups.sum(dim=2, keepdim=True)) / count
        centred = groups - mean
        eye = torch.eye(self.group_size, device=groups.device).expand_as(self.running_whitening)
        covariance = eye * self.eps + all_reduce_sum(centred @ centred.transpose(1, 2)) / count
        inverse_trace = 1 / covariance.diagonal(dim1=1, dim2=2).sum(dim=1).view(-1, 1, 1)
        normalised = covariance * inverse_trace
        projection = eye
        for _ in range(self.iterations):
            projection = 1.5 * projection - 0.5 * torch.matrix_power(projection, 3) @ normalised
        whitening = projection * inverse_trace.sqrt()
        with torch.no_grad():
            self.running_mean.lerp_(mean, self.momentum)
            self.running_whitening.lerp_(whitening, self.momentum)
        return centred, whitening


@register_method(
    "vibcreg",
    paper='Lee & Aune, "VIbCReg: Variance-Invariance-better-Covariance Regularization", 2021',
)
class VIbCReg(RotationAuxMixin, SSLMethod):
    """VIbCReg with the rotation auxiliary.

    VICReg with a normalised covariance term (the correlation matrix of each view's projections
    is decorrelated, :func:`~rotaux.losses.vibcreg.vibcreg_loss`) and IterNorm whitening as the
    projector's last layer. The projector is solo-learn's: three linear layers with BatchNorm
    and GELU between them, then :class:`IterNorm` (64 groups, 5 iterations). Defaults are
    solo-learn's CIFAR recipe (``scripts/pretrain/cifar/vibcreg.yaml``): width 2048, loss weights
    25/25/200 (the paper's), IterNorm on, LARS with lr 0.3 for a batch of 256, eta 0.02 and
    weight decay 1e-4.

    Args:
        optimizer: optimizer and schedule (this recipe's by default).
        proj_hidden_dim: hidden width of the projector.
        proj_output_dim: output width of the projector.
        invariance_weight: weight of the invariance (mean squared error) term (lambda).
        variance_weight: weight of the variance term (mu).
        covariance_weight: weight of the normalised covariance term (nu).
        iternorm: end the projector with IterNorm (off: a plain linear output, as VICReg).
        iternorm_groups: about how many feature groups IterNorm whitens separately.
        iternorm_iters: IterNorm's Newton iterations.
    """

    def __init__(
        self,
        optimizer: OptimizerConfig = OptimizerConfig(lr=0.3, weight_decay=1e-4, lars_clip=False),
        proj_hidden_dim: int = 2048,
        proj_output_dim: int = 2048,
        invariance_weight: float = 25.0,
        variance_weight: float = 25.0,
        covariance_weight: float = 200.0,
        iternorm: bool = True,
        iternorm_groups: int = 64,
        iternorm_iters: int = 5,
        **base_options: Any,
    ) -> None:
        super().__init__(optimizer=optimizer, **base_options)
        layers: list[nn.Module] = []
        for width_in in (self.num_features, proj_hidden_dim):
            layers += [
                nn.Linear(width_in, proj_hidden_dim, bias=False),
                nn.BatchNorm1d(proj_hidden_dim),
                nn.GELU(),
            ]
        layers.append(nn.Linear(proj_hidden_dim, proj_output_dim))
        if iternorm:
            layers.append(IterNorm(proj_output_dim, iternorm_groups, iternorm_iters))
        self.projector = nn.Sequential(*layers)
        self.invariance_weight = invariance_weight
        self.variance_weight = variance_weight
        self.covariance_weight = covariance_weight

    def training_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        view_1, view_2 = batch["views"]
        features_1 = self.backbone(view_1)
        loss = vibcreg_loss(
            self.projector(features_1),
            self.projector(self.backbone(view_2)),
            self.invariance_weight,
            self.variance_weight,
            self.covariance_weight,
        )
        return self.step_output(loss, batch, features_1)
