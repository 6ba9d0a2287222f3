"""DeepCluster-v2: Caron et al., "Unsupervised Learning of Visual Features by Contrasting Cluster
Assignments", NeurIPS 2020 (Appendix A; the official ``main_deepclusterv2.py``)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from rotaux.data.sampler import mix_seed
from rotaux.distributed import gather_no_grad
from rotaux.errors import RotauxError
from rotaux.heads import MLP
from rotaux.losses.deepclusterv2 import deepclusterv2_loss, spherical_kmeans
from rotaux.methods.base import SSLMethod
from rotaux.methods.multicrop import check_large_crops, multicrop_features
from rotaux.methods.registry import register_method
from rotaux.methods.rotation import RotationAuxMixin
from rotaux.optim import OptimizerConfig
from rotaux.staging import StagedUpdates


class ClusterMemory(StagedUpdates):
    """DeepCluster-v2's memory bank and k-means state, as buffers saved in checkpoints.

    ``embeddings[c, i]`` is the latest embedding of large crop ``c`` of training sample ``i``
    (its index in the dataset), ``filled[i]`` whether sample ``i`` has one yet. :meth:`cluster`
    runs one spherical k-means per prototype set over the bank (set ``h`` over crop
    ``h % num_crops``, as the official code cycles through ``crops_for_assign``) and keeps the
    ``centroids`` (the frozen prototypes) and every sample's cluster in ``assignments`` (-1 for a
    sample not in the bank). :meth:`store` takes the embeddings of every rank, so every rank
    holds the same bank and computes the same clusters; they enter the bank at :meth:`commit`,
    which the method calls after each optimizer step (:mod:`rotaux.staging`: a step that the
    divergence guard drops leaves no trace; outside a Trainer call :meth:`commit` after
    :meth:`store`). The buffers are empty until :meth:`allocate` sizes them for the training
    set; a checkpoint's bank loads into an empty memory at the checkpoint's size.

    Args:
        num_crops: large crops kept per sample.
        dim: width of an embedding.
        num_prototypes: clusters per prototype set.
        num_sets: prototype sets (independent k-means runs).
        seed: seed of the k-means initialisations (each run draws from ``(seed, epoch, set)``).
    """

    embeddings: torch.Tensor
    filled: torch.Tensor
    assignments: torch.Tensor
    centroids: torch.Tensor
    clustered_epoch: torch.Tensor
    seed: torch.Tensor

    def __init__(
        self, num_crops: int, dim: int, num_prototypes: int, num_sets: int, seed: int
    ) -> None:
        super().__init__()
        self.num_crops = num_crops
        self.register_buffer("embeddings", torch.zeros(num_crops, 0, dim))
        self.register_buffer("filled", torch.zeros(0, dtype=torch.bool))
        self.register_buffer("assignments", torch.zeros(num_sets, 0, dtype=torch.long))
        centroids = F.normalize(torch.randn(num_sets, num_prototypes, dim), dim=-1)
        self.register_buffer("centroids", centroids)
        self.register_buffer("clustered_epoch", torch.tensor(-1))
        self.register_buffer("seed", torch.tensor(seed))
        self._clustered_epoch: int | None = None

    @property
    def size(self) -> int:
        """Samples the bank has room for (0 before :meth:`allocate`)."""
        return len(self.filled)

    def allocate(self, size: int) -> None:
        """Size an empty bank for a training set of ``size`` samples (a loaded bank must fit)."""
        if self.size == size:
            return
        if self.size:
            raise RotauxError(
                f"The checkpoint's DeepCluster-v2 memory bank holds {self.size} samples but the "
                f"training set has {size}: resume on the data the run started with."
            )
        device = self.centroids.device
        num_sets, dim = self.assignments.shape[0], self.embeddings.shape[2]
        self.embeddings = torch.zeros(self.num_crops, size, dim, device=device)
        self.filled = torch.zeros(size, dtype=torch.bool, device=device)
        self.assignments = torch.full((num_sets, size), -1, dtype=torch.long, device=device)

    @torch.no_grad()
    def store(self, indices: torch.Tensor, crops: list[torch.Tensor]) -> None:
        """Gather the embeddings of large crops ``crops`` (each ``(B, dim)``) of the samples
        ``indices`` from every rank and stage them for the bank."""
        gathered = [gather_no_grad(embeddings.detach().float()) for embeddings in crops]
        self.stage((gather_no_grad(indices.to(self.filled.device)), gathered))

    @torch.no_grad()
    def apply_staged(self, update: tuple[torch.Tensor, list[torch.Tensor]]) -> None:
        """Write gathered embeddings into the bank rows of their samples."""
        indices, crops = update
        for bank, embeddings in zip(self.embeddings, crops, strict=True):
            bank.index_copy_(0, indices, embeddings)
        self.filled.index_fill_(0, indices, True)

    def targets(self, indices: torch.Tensor) -> torch.Tensor:
        """``(H, B)`` clusters of the samples ``indices`` in each prototype set (-1: none)."""
        return self.assignments[:, indices.to(self.assignments.device)]

    def last_clustered_epoch(self) -> int:
        """The epoch whose start the clusters were made for (-1: none yet). Reads the device
        once after construction or loading, not at every call."""
        if self._clustered_epoch is None:
            self._clustered_epoch = int(self.clustered_epoch)
        return self._clustered_epoch

    @torch.no_grad()
    def cluster(self, epoch: int, num_iters: int) -> None:
        """k-means of the bank for every prototype set, for the start of ``epoch``."""
        members = self.filled.nonzero().squeeze(1)
        for index, centroids in enumerate(self.centroids):
            generator = torch.Generator().manual_seed(mix_seed(int(self.seed), epoch, index))
            rows = self.embeddings[index % self.num_crops, members]
            clusters, assigned = spherical_kmeans(rows, len(centroids), num_iters, generator)
            centroids.copy_(clusters)
            self.assignments[index].fill_(-1).index_copy_(0, members, assigned)
        self.clustered_epoch.fill_(epoch)
        self._clustered_epoch = epoch

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any) -> None:
        for name in ("embeddings", "filled", "assignments"):
            saved = state_dict.get(prefix + name)
            if saved is not None and saved.shape != getattr(self, name).shape:
                setattr(self, name, torch.empty_like(saved, device=self.centroids.device))
        super()._load_from_state_dict(state_dict, prefix, *args)
        self._clustered_epoch = None
        self.discard()


@register_method(
    "deepclusterv2",
    paper='Caron et al., "Unsupervised Learning of Visual Features by Contrasting Cluster '
    'Assignments", NeurIPS 2020 (DeepCluster-v2)',
)
class DeepClusterV2(RotationAuxMixin, SSLMethod):
    """DeepCluster-v2 with the rotation auxiliary.

    Every crop's L2-normalised projection is scored against ``num_prototype_sets`` sets of
    frozen prototypes, and a cross-entropy with temperature pulls it towards its sample's
    cluster in each set. The prototypes and clusters come from spherical k-means
    (``kmeans_iters`` iterations) run at the start of every epoch over a memory bank that holds
    each training sample's latest large-crop embeddings; each set clusters one large crop's bank
    (cycling through them) from its own random start. The bank is filled during the epoch
    (after each optimizer step) with the embeddings of every rank, each sample by its dataset
    index (``batch["index"]``), so all ranks cluster the same bank and agree on the clusters;
    the k-means splits its work over the ranks
    (:func:`~rotaux.losses.deepclusterv2.spherical_kmeans`). Bank, prototypes and clusters are
    buffers saved in checkpoints, and the clusters are not recomputed when a run resumes in the
    middle of an epoch, so a resumed run continues exactly.

    The first epoch fills the bank: its samples have no cluster yet, so its DeepCluster loss is
    0 (only the rotation loss trains). The official code fills the bank with a forward pass over
    the data before training instead; solo-learn, like here, starts clustering after the first
    epoch. Multi-crop as in SwAV: ``batch["views"]`` may hold small crops after the
    ``num_large_crops`` large ones; all crops are pulled towards the clusters, only the large
    ones enter the bank.

    Defaults are solo-learn's CIFAR recipe (``scripts/pretrain/cifar/deepclusterv2.yaml`` and its
    method defaults): projector 2048 -> 128, 3 sets of 3000 prototypes, temperature 0.1, 10
    k-means iterations, LARS with lr 0.6 for a batch of 256, eta 0.02, weight decay 1e-6, 11
    warm-up epochs and a final learning rate of 0.001 times the peak; the official ImageNet
    values are the same apart from the optimizer's.

    Args:
        optimizer: optimizer and schedule (this recipe's by default).
        proj_hidden_dim: hidden width of the projector.
        proj_output_dim: output width of the projector (the embedding that is clustered).
        num_prototypes: clusters (prototypes) per prototype set; at most the number of training
            images.
        num_prototype_sets: independent k-means clusterings, each with its own prototypes.
        temperature: softmax temperature of the cross-entropy.
        kmeans_iters: k-means iterations at every epoch start.
        num_large_crops: how many leading views are large crops kept in the memory bank.
    """

    def __init__(
        self,
        optimizer: OptimizerConfig = OptimizerConfig(
            lr=0.6, weight_decay=1e-6, warmup_epochs=11, min_lr_ratio=1e-3
        ),
        proj_hidden_dim: int = 2048,
        proj_output_dim: int = 128,
        num_prototypes: int = 3000,
        num_prototype_sets: int = 3,
        temperature: float = 0.1,
        kmeans_iters: int = 10,
        num_large_crops: int = 2,
        **base_options: Any,
    ) -> None:
        super().__init__(optimizer=optimizer, **base_options)
        if num_prototypes < 1 or num_prototype_sets < 1 or kmeans_iters < 0:
            raise RotauxError(
                "DeepClusterV2 needs num_prototypes >= 1, num_prototype_sets >= 1 and "
                f"kmeans_iters >= 0, got {num_prototypes}, {num_prototype_sets} and "
                f"{kmeans_iters}."
            )
        self.projector = MLP(self.num_features, proj_hidden_dim, proj_output_dim)
        self.num_prototypes = num_prototypes
        self.temperature = temperature
        self.kmeans_iters = kmeans_iters
        self.num_large_crops = num_large_crops
        seed = int(torch.randint(0, 2**62, ()))
        self.memory = ClusterMemory(
            num_large_crops, proj_output_dim, num_prototypes, num_prototype_sets, seed
        )

    @property
    def num_global_views(self) -> int:
        return self.num_large_crops

    def on_train_start(self) -> None:
        super().on_train_start()
        size = len(self.trainer.train_dataloader.dataset)
        if size < self.num_prototypes:
            raise RotauxError(
                f"DeepClusterV2 clusters the {size} training images into num_prototypes="
                f"{self.num_prototypes} clusters: lower --model.num_prototypes below {size}."
            )
        self.memory.allocate(size)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # checked before every step rather than at the epoch start: Lightning does not call
        # on_train_epoch_start when it resumes from a checkpoint of an epoch's last step; and a
        # run resumed mid-epoch keeps the clusters its checkpoint saved for this epoch
        epoch = self.current_epoch
        if epoch > 0 and self.memory.last_clustered_epoch() != epoch:
            self.memory.cluster(epoch, self.kmeans_iters)

    def training_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        views = batch["views"]
        check_large_crops("DeepClusterV2", views, self.num_large_crops)
        features = multicrop_features(self.backbone, views)
        embeddings = F.normalize(self.projector(features).float(), dim=-1)
        with torch.autocast(embeddings.device.type, enabled=False):
            scores = torch.einsum("nd,hkd->hnk", embeddings, self.memory.centroids)
        batch_size = len(views[0])
        scores = scores.unflatten(1, (len(views), batch_size))
        crops = list(embeddings.chunk(len(views)))[: self.num_large_crops]
        if self.memory.size:
            indices = self.sample_indices(batch)
            loss = deepclusterv2_loss(scores, self.memory.targets(indices), self.temperature)
            self.memory.store(indices, crops)
        else:
            # no memory outside a Trainer's fit (on_train_start sizes it): no sample has a cluster
            unassigned = torch.full((len(scores), batch_size), -1, device=scores.device)
            loss = deepclusterv2_loss(scores, unassigned, self.temperature)
        return self.step_output(loss, batch, features[:batch_size])

    @staticmethod
    def sample_indices(batch: dict) -> torch.Tensor:
        """The dataset index of every sample of ``batch``."""
        if "index" not in batch:
            raise RotauxError(
                "DeepClusterV2 keeps a memory bank by sample and needs the dataset index of every "
                "sample (batch['index']), which SSLDataModule's training batches carry."
            )
        return batch["index"]
