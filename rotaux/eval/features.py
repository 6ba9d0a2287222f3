"""Features of whole datasets for evaluation: the kNN bank and linear evaluation on cached
features."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from rotaux.data.datamodule import EvalDataset
from rotaux.distributed import gather_no_grad, rank, world_size


def _recorded_labels(dataset: Dataset) -> torch.Tensor | None:
    if isinstance(dataset, EvalDataset):
        return _recorded_labels(dataset.base)
    if isinstance(dataset, Subset):
        labels = _recorded_labels(dataset.dataset)
        return None if labels is None else labels[torch.as_tensor(dataset.indices)]
    for attribute in ("targets", "labels"):
        labels = getattr(dataset, attribute, None)
        if labels is not None and len(labels) == len(dataset):
            return torch.as_tensor(labels)
    return None


def labeled_indices(dataset: Dataset) -> list[int]:
    """Indices of the samples whose label is >= 0, read from the ``targets`` / ``labels`` that
    torchvision, image-folder and synthetic datasets record, so that STL-10's 100k unlabeled
    images are never decoded. Every index where the dataset records no labels."""
    labels = _recorded_labels(dataset)
    if labels is None:
        return list(range(len(dataset)))
    return torch.nonzero(labels >= 0).flatten().tolist()


@torch.no_grad()
def extract_features(
    encoder: Callable[[torch.Tensor], torch.Tensor],
    dataset: Dataset,
    normalize: Callable[[torch.Tensor], torch.Tensor],
    feature_dim: int,
    device: torch.device,
    batch_size: int,
    num_workers: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 features ``(N, feature_dim)`` and labels ``(N,)`` of every sample of ``dataset``
    (``{"image", "label"}`` samples with uint8 images), in dataset order, on ``device``.

    Under DDP rank ``r`` encodes samples ``r, r + W, r + 2W, ...`` and the shards are gathered
    (:func:`~rotaux.distributed.gather_no_grad`), so every rank returns the same complete set,
    each sample exactly once (a ``DistributedSampler`` would pad with duplicates). The caller
    puts ``encoder`` in eval mode and chooses the autocast context.
    """
    ranks = world_size()
    total = len(dataset)
    per_rank = math.ceil(total / ranks)
    shard = Subset(dataset, range(rank(), total, ranks))
    loader = DataLoader(
        shard,
        batch_size=batch_size,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        # the workers' seeds come from here, not from the global generator the training draws
        generator=torch.Generator().manual_seed(0),
    )
    # Every rank sends per_rank rows; the padding rows land at positions >= total after the
    # interleave below and are cut off.
    features = torch.zeros(per_rank, feature_dim, device=device)
    labels = torch.full((per_rank,), -1, dtype=torch.long, device=device)
    start = 0
    for batch in loader:
        images = normalize(batch["image"].to(device, non_blocking=True))
        end = start + len(images)
        features[start:end] = encoder(images).float()
        labels[start:end] = batch["label"].to(device)
        start = end
    # rank r's row j is sample r + j * W: interleaving the gathered shards restores the order
    features = gather_no_grad(features).view(ranks, per_rank, feature_dim).transpose(0, 1)
    labels = gather_no_grad(labels).view(ranks, per_rank).transpose(0, 1)
    return features.reshape(-1, feature_dim)[:total], labels.reshape(-1)[:total]
