"""Weighted k-nearest-neighbour accuracy of the representation during pretraining."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from lightning import Callback, LightningModule, Trainer
from torch.utils.data import Dataset, Subset
from torchmetrics.classification import MulticlassAccuracy

from rotaux.callbacks.evaluation_labels import switch_off_without_labels
from rotaux.errors import RotauxError
from rotaux.eval.features import extract_features, labeled_indices


def knn_class_scores(
    queries: torch.Tensor,
    bank: torch.Tensor,
    bank_labels: torch.Tensor,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
    chunk_size: int = 4096,
) -> torch.Tensor:
    """Class votes ``(Q, num_classes)`` of the weighted kNN classifier of Wu et al., "Unsupervised
    Feature Learning via Non-Parametric Instance Discrimination" (CVPR 2018), as used by the
    kNN monitors of MoCo's CIFAR-10 demo and DINO: each query's ``k`` most cosine-similar bank
    entries vote for their labels with weight ``exp(similarity / temperature)``; the prediction
    is the class with the largest vote.

    Computed in fp32 on L2-normalised features, ``chunk_size`` queries against ``chunk_size``
    bank entries at a time with a running top-k, so memory stays ``O(chunk_size * (chunk_size +
    k))`` whatever the bank size. A query's votes are scaled by ``exp(-s_max / temperature)``
    (its nearest neighbour weighs 1): the ranking of the classes is unchanged and small
    temperatures cannot overflow.
    """
    if len(bank) == 0:
        raise ValueError("The kNN bank is empty.")
    k = min(k, len(bank))
    bank_labels = bank_labels.to(queries.device)
    scores = torch.zeros(len(queries), num_classes, device=queries.device)
    for first in range(0, len(queries), chunk_size):
        block = F.normalize(queries[first : first + chunk_size].float(), dim=1)
        top_similarities = block.new_empty(len(block), 0)
        top_indices = torch.empty(len(block), 0, dtype=torch.long, device=block.device)
        for start in range(0, len(bank), chunk_size):
            entries = F.normalize(bank[start : start + chunk_size].float(), dim=1)
            positions = torch.arange(start, start + len(entries), device=block.device)
            candidates = torch.cat([top_similarities, block @ entries.T], dim=1)
            candidate_indices = torch.cat([top_indices, positions.expand(len(block), -1)], dim=1)
            top_similarities, best = candidates.topk(min(k, candidates.shape[1]), dim=1)
            top_indices = candidate_indices.gather(1, best)
        weights = ((top_similarities - top_similarities[:, :1]) / temperature).exp()
        scores[first : first + len(block)].scatter_add_(1, bank_labels[top_indices], weights)
    return scores


class KNNMonitor(Callback):
    """Reports ``val/knn_top1``, the weighted kNN accuracy (:func:`knn_class_scores`) of the
    validation features against a bank of training features, every ``every_n_epochs`` epochs.

    Defaults are those of the kNN monitor in MoCo's CIFAR-10 demo (k = 200, temperature 0.1,
    cosine similarity; Wu et al. 2018 use k = 200 with temperature 0.07). At the start of a
    validation epoch that ends epoch ``n * every_n_epochs`` (counting from 1), the bank is built
    from the labelled training images with the evaluation transform (no augmentation), encoded
    by the module's ``forward`` in eval mode (Lightning's validation loop has switched it) under
    the run's precision, then held in fp32. Validation features are the ``features`` that
    ``validation_step`` returns, classified batch by batch, so only the bank is held in memory.
    Labels below 0 (STL-10's unlabeled images) are skipped on both sides. Nothing is computed
    during the sanity check, or in epochs without validation (see ``check_val_every_n_epoch``).

    Under DDP every rank encodes its share of the bank and the shares are gathered, each image
    exactly once; every rank classifies its own validation batches and the accuracy is summed
    over ranks. Lightning's distributed validation sampler repeats up to ``world_size - 1``
    validation images to even out the ranks, which the accuracy counts twice (as for every
    other validation metric). The bank is deterministic: no augmentation, and the optional
    subsample uses its own seeded generator without touching the global random state.

    With ``--data.eval_dataset`` the bank holds that set's labelled training split and the
    validation set is its validation split (the way to monitor pretraining on unlabeled
    images); without labels anywhere the monitor is switched off with one warning that names
    that option.

    The module must return pooled features from ``forward`` and expose ``num_features`` (every
    :class:`~rotaux.methods.SSLMethod` does). The bank lives on the module's device:
    ``max_bank_size`` bounds it for large training sets.

    Args:
        k: neighbours that vote.
        temperature: the vote of a neighbour at cosine similarity ``s`` is ``exp(s / T)``.
        every_n_epochs: compute the accuracy after every this many training epochs.
        max_bank_size: use a random subset of at most this many training images for the bank
            (``None``: all of them).
        chunk_size: queries and bank entries per block of the similarity computation.
        seed: seed of the bank subset.
    """

    def __init__(
        self,
        k: int = 200,
        temperature: float = 0.1,
        every_n_epochs: int = 1,
        max_bank_size: int | None = None,
        chunk_size: int = 4096,
        seed: int = 0,
    ) -> None:
        if k < 1 or every_n_epochs < 1 or chunk_size < 1:
            raise RotauxError(
                f"KNNMonitor needs k, every_n_epochs and chunk_size >= 1, got k={k}, "
                f"every_n_epochs={every_n_epochs}, chunk_size={chunk_size}."
            )
        if temperature <= 0:
            raise RotauxError(f"KNNMonitor temperature must be positive, got {temperature}.")
        if max_bank_size is not None and max_bank_size < 1:
            raise RotauxError(f"KNNMonitor max_bank_size must be >= 1, got {max_bank_size}.")
        self.k = k
        self.temperature = temperature
        self.every_n_epochs = every_n_epochs
        self.max_bank_size = max_bank_size
        self.chunk_size = chunk_size
        self.seed = seed
        self._bank: tuple[torch.Tensor, torch.Tensor] | None = None
        self.off = False

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.off = switch_off_without_labels(trainer, "The kNN monitor", ("val/knn_top1",))
        if self.off:
            return
        self.num_classes = trainer.datamodule.num_classes
        self.top1 = MulticlassAccuracy(self.num_classes, top_k=1, average="micro")

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._bank = None
        if self.off or trainer.sanity_checking or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        self.top1.to(pl_module.device)
        self.top1.reset()
        self._bank = self._build_bank(trainer, pl_module)

    def _bank_dataset(self, dataset: Dataset) -> Dataset:
        indices = labeled_indices(dataset)
        if self.max_bank_size is not None and len(indices) > self.max_bank_size:
            generator = torch.Generator().manual_seed(self.seed)
            chosen = torch.randperm(len(indices), generator=generator)[: self.max_bank_size]
            indices = [indices[i] for i in chosen.sort().values.tolist()]
        return Subset(dataset, indices)

    def _build_bank(
        self, trainer: Trainer, pl_module: LightningModule
    ) -> tuple[torch.Tensor, torch.Tensor]:
        datamodule = trainer.datamodule
        with trainer.precision_plugin.forward_context():
            features, labels = extract_features(
                pl_module,
                self._bank_dataset(datamodule.eval_train_dataset()),
                datamodule.normalize,
                pl_module.num_features,
                pl_module.device,
                datamodule.batch_size,
                datamodule.num_workers,
            )
        labeled = labels >= 0
        if not labeled.any():
            raise RotauxError(
                "KNNMonitor found no labelled training images for its bank; give a labelled "
                "evaluation set with --data.eval_dataset, or remove the callback."
            )
        return features[labeled], labels[labeled]

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._bank is None:
            return
        labels = batch["label"]
        labeled = labels >= 0
        if not labeled.any():
            return
        scores = knn_class_scores(
            outputs["features"][labeled],
            *self._bank,
            self.num_classes,
            self.k,
            self.temperature,
            self.chunk_size,
        )
        self.top1.update(scores, labels[labeled])

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._bank is None:
            return
        pl_module.log("val/knn_top1", self.top1.compute())
        self.top1.reset()
        self._bank = None
