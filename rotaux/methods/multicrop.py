"""Multi-crop (Caron et al., NeurIPS 2020): views of several sizes per image, the large ones
first. Shared by SwAV, DINO, iBOT, DeepCluster v2, W-MSE and SupCon."""

from __future__ import annotations

import itertools

import torch
from torch import nn

from rotaux.errors import RotauxError


def multicrop_features(backbone: nn.Module, views: list[torch.Tensor]) -> torch.Tensor:
    """Backbone features of all ``views``, concatenated in order. Consecutive views of one size
    go through the backbone in a single call, as in the multi-crop code of SwAV and DINO (so
    BatchNorm normalises the large crops together and the small crops together)."""
    groups = itertools.groupby(views, key=lambda view: view.shape[-2:])
    return torch.cat([backbone(torch.cat(list(group))) for _, group in groups])


def check_large_crops(method: str, views: list[torch.Tensor], num_large_crops: int) -> None:
    """Refuse batches with fewer views than the method treats as large crops."""
    if len(views) < max(num_large_crops, 2):
        raise RotauxError(
            f"{method} needs at least max(num_large_crops, 2) = {max(num_large_crops, 2)} views "
            f"per image but the batch has {len(views)}; list the large crops first in "
            "--data.augmentations with num_crops adding up to --model.num_large_crops."
        )
