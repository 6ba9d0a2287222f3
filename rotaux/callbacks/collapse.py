"""Collapse and rank monitors on the validation embeddings: RankMe and the spread of normalised
embeddings, with a warning (or a stop) when a run collapses."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn

from rotaux.distributed import all_reduce_sum
from rotaux.errors import RotauxError


def rankme_from_gram(gram: torch.Tensor) -> float:
    """RankMe (Garrido et al., "RankMe: Assessing the Downstream Performance of Pretrained
    Self-Supervised Representations by Their Rank", ICML 2023) of an embedding matrix ``Z``
    ``(N, d)``, given its Gram matrix ``Z^T Z`` ``(d, d)``.

    RankMe is ``exp(entropy(p))`` with ``p_k = s_k / sum(s)`` over the singular values ``s_k`` of
    ``Z`` (uncentred, as in the paper): ``k`` equal non-zero singular values give exactly ``k``,
    a constant or rank-1 embedding gives 1, and the maximum is ``min(N, d)``. The singular values
    are the square roots of the Gram matrix's eigenvalues, so the Gram matrix, a sum over samples,
    is all that needs to be accumulated and reduced across ranks. Eigenvalues below the usual
    rank tolerance (``d * eps * largest``) are round-off and count as zero; the paper adds
    ``1e-7`` to every ``p_k`` instead, which moves the value by less than ``1e-3`` for ``d`` up to
    a few thousand.
    """
    eigenvalues = torch.linalg.eigvalsh(gram.double())
    largest = eigenvalues.max()
    if largest <= 0:
        return 0.0
    tolerance = largest * gram.shape[0] * torch.finfo(torch.float64).eps
    singular_values = torch.where(eigenvalues > tolerance, eigenvalues, 0.0).sqrt()
    p = singular_values / singular_values.sum()
    entropy = -(p * torch.where(p > 0, p.log(), 0.0)).sum()
    return entropy.exp().item()


@dataclass
class EmbeddingStatistics:
    """Sums over the samples of one embedding, from which RankMe and the spread of the
    normalised embeddings follow: the sample count, the Gram matrix ``sum z z^T`` and the first
    and second moments of ``z / ||z||`` per dimension. Accumulated in float64 (float32 where the
    device has no float64, as on Apple GPUs); :meth:`all_reduce` sums them over DDP ranks, after
    which every rank holds the statistics of the whole validation set."""

    count: torch.Tensor
    gram: torch.Tensor
    normalised_sum: torch.Tensor
    normalised_square_sum: torch.Tensor

    @classmethod
    def zeros(cls, dim: int, device: torch.device) -> EmbeddingStatistics:
        dtype = torch.float32 if device.type == "mps" else torch.float64
        return cls(
            count=torch.zeros((), dtype=dtype, device=device),
            gram=torch.zeros(dim, dim, dtype=dtype, device=device),
            normalised_sum=torch.zeros(dim, dtype=dtype, device=device),
            normalised_square_sum=torch.zeros(dim, dtype=dtype, device=device),
        )

    @property
    def dim(self) -> int:
        return self.gram.shape[0]

    def update(self, embeddings: torch.Tensor) -> None:
        """Add a batch ``(B, d)`` of embeddings."""
        z = embeddings.detach().to(self.gram.dtype)
        normalised = F.normalize(z, dim=1)
        self.count += len(z)
        self.gram += z.T @ z
        self.normalised_sum += normalised.sum(dim=0)
        self.normalised_square_sum += normalised.square().sum(dim=0)

    def all_reduce(self) -> EmbeddingStatistics:
        """The statistics summed over every DDP rank (these ones without DDP)."""
        packed = torch.cat(
            [
                self.count.reshape(1),
                self.gram.reshape(-1),
                self.normalised_sum,
                self.normalised_square_sum,
            ]
        )
        count, gram, first, second = all_reduce_sum(packed).split(
            [1, self.dim * self.dim, self.dim, self.dim]
        )
        return EmbeddingStatistics(count[0], gram.view(self.dim, self.dim), first, second)

    def rankme(self) -> float:
        """RankMe of the accumulated embeddings (:func:`rankme_from_gram`)."""
        return rankme_from_gram(self.gram)

    def normalised_std(self) -> float:
        """The mean over dimensions of the standard deviation (over samples, population form) of
        the L2-normalised embeddings: the collapse signal of Chen & He, "Exploring Simple Siamese
        Representation Learning" (CVPR 2021, Sec. 4.1). 0 for a collapsed embedding; about
        ``1 / sqrt(d)`` for embeddings spread isotropically over the sphere."""
        count = self.count.clamp(min=1)
        mean = self.normalised_sum / count
        variance = (self.normalised_square_sum / count - mean.square()).clamp(min=0)
        return variance.sqrt().mean().item()


@dataclass(frozen=True)
class CollapseReading:
    """What :class:`CollapseMonitor` measured on one embedding at one validation."""

    name: str
    samples: int
    dim: int
    rankme: float
    normalised_std: float

    @property
    def std_ratio(self) -> float:
        """``normalised_std * sqrt(d)``: 1 for isotropic embeddings, 0 for a collapsed one."""
        return self.normalised_std * math.sqrt(self.dim)

    @property
    def max_rank(self) -> int:
        return min(self.samples, self.dim)


class CollapseMonitor(Callback):
    """Logs, at every validation, the RankMe and the normalised-embedding standard deviation of
    the validation embeddings, ``val/rankme/<name>`` and ``val/norm_std/<name>``, and warns (or
    stops the run) when they say the representation has collapsed.

    The embeddings are the pooled backbone features that ``validation_step`` already returns
    (``backbone``) and whatever else the method's
    :meth:`~rotaux.methods.SSLMethod.validation_embeddings` adds for them, such as the projector's
    output (``projector``) for the methods that have one; the extra head pass runs in eval mode on
    the features and costs little next to the backbone's. The statistics are sums over samples
    (see :class:`EmbeddingStatistics`), all-reduced over DDP ranks, so every rank reads the same
    numbers and takes the same decision. (Lightning's distributed validation sampler pads the
    last batches with a few repeated images so that every rank gets as many; those are counted.)

    Collapse criteria, per embedding of dimension ``d`` over ``N`` validation images:

    - dimensional collapse, ``RankMe < min_rank_fraction * min(N, d)``: the embeddings use fewer
      than that share of the directions available to them (RankMe is 1 for a complete collapse;
      Garrido et al. report ranks of a few hundred for good ResNet-50 representations);
    - complete collapse, ``normalised std < min_std_ratio / sqrt(d)``: the normalised embeddings
      vary ``1 / min_std_ratio`` times less than isotropic ones would (SimSiam's collapsed runs
      go to 0); since ``(std * sqrt(d))^2`` bounds ``1 - mean cosine similarity`` from below,
      0.01 means the embeddings of different images agree to a cosine above 0.9999.

    The defaults were set so that a randomly initialised network, the least trained state a run
    starts from, passes (a ResNet-18 and an MLP projector at initialisation measured RankMe 8-13%
    of ``min(N, d)`` and ``std * sqrt(d)`` of 0.08-0.09 on 512 synthetic images), while a
    constant or rank-1 embedding fails both. The sanity-check validation is skipped.

    Args:
        enabled: compute the statistics at every validation (on by default: a ``d x d`` Gram
            matrix per embedding and one eigendecomposition per validation).
        min_rank_fraction: dimensional-collapse threshold on RankMe, as a fraction of
            ``min(N, d)``.
        min_std_ratio: complete-collapse threshold on the normalised-embedding std, in units of
            ``1 / sqrt(d)``.
        stop_on_collapse: end the run (after the current epoch, with its checkpoints) when it
            collapses, instead of only warning.
    """

    def __init__(
        self,
        enabled: bool = True,
        min_rank_fraction: float = 0.01,
        min_std_ratio: float = 0.01,
        stop_on_collapse: bool = False,
    ) -> None:
        if not 0 <= min_rank_fraction < 1 or not 0 <= min_std_ratio < 1:
            raise RotauxError(
                "CollapseMonitor's min_rank_fraction and min_std_ratio must be in [0, 1), got "
                f"{min_rank_fraction} and {min_std_ratio}."
            )
        self.enabled = enabled
        self.min_rank_fraction = min_rank_fraction
        self.min_std_ratio = min_std_ratio
        self.stop_on_collapse = stop_on_collapse
        self.readings: list[CollapseReading] = []
        self._statistics: dict[str, EmbeddingStatistics] = {}

    def _active(self, trainer: Trainer) -> bool:
        return self.enabled and not trainer.sanity_checking

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._statistics = {}

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not self._active(trainer):
            return
        features = outputs["features"]
        embed = getattr(pl_module, "validation_embeddings", None)
        with torch.no_grad(), trainer.precision_plugin.forward_context():
            embeddings = embed(features) if callable(embed) else {"backbone": features}
        with torch.autocast(features.device.type, enabled=False):
            for name, values in embeddings.items():
                if name not in self._statistics:
                    self._statistics[name] = EmbeddingStatistics.zeros(
                        values.shape[1], values.device
                    )
                self._statistics[name].update(values.float())

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._active(trainer) or not self._statistics:
            return
        self.readings = []
        for name, statistics in self._statistics.items():
            total = statistics.all_reduce()
            reading = CollapseReading(
                name, int(total.count.item()), total.dim, total.rankme(), total.normalised_std()
            )
            self.readings.append(reading)
            pl_module.log_dict(
                {
                    f"val/rankme/{name}": reading.rankme,
                    f"val/norm_std/{name}": reading.normalised_std,
                }
            )
        self._statistics = {}
        problems = [problem for reading in self.readings for problem in self.diagnose(reading)]
        if not problems:
            return
        stop = self.stop_on_collapse
        rank_zero_warn(
            f"The representation has collapsed at epoch {trainer.current_epoch} (validation "
            f"embeddings): {'; '.join(problems)}. Usual causes: a learning rate too high or a "
            "warm-up too short, too small a batch or too weak augmentations for the method, a "
            "predictor or momentum setting outside the method's recipe. "
            + (
                "Stopping the run (--collapse.stop_on_collapse true)."
                if stop
                else "Set --collapse.stop_on_collapse true to stop such runs."
            )
        )
        if stop:
            trainer.should_stop = True

    def diagnose(self, reading: CollapseReading) -> list[str]:
        """The collapse criteria that ``reading`` fails, each described in words."""
        problems = []
        rank_threshold = self.min_rank_fraction * reading.max_rank
        if reading.rankme < rank_threshold:
            problems.append(
                f"{reading.name} RankMe {reading.rankme:.2f} < {rank_threshold:.2f} "
                f"({self.min_rank_fraction:g} x min(N={reading.samples}, d={reading.dim}))"
            )
        if reading.std_ratio < self.min_std_ratio:
            problems.append(
                f"{reading.name} normalised std {reading.normalised_std:.2e} < "
                f"{self.min_std_ratio / math.sqrt(reading.dim):.2e} "
                f"({self.min_std_ratio:g} / sqrt(d={reading.dim}))"
            )
        return problems
