"""Online linear evaluation during pretraining (the protocol of solo-learn's online classifier)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from lightning import Callback, LightningModule, Trainer
from torch import nn
from torch.utils.data import Subset
from torchmetrics.classification import MulticlassAccuracy

from rotaux.callbacks.evaluation_labels import evaluation_data, switch_off_without_labels
from rotaux.errors import RotauxError
from rotaux.eval.features import extract_features, labeled_indices
from rotaux.eval.linear import train_linear_classifier


class OnlineLinearProbe(Callback):
    """Trains a linear classifier on detached backbone features of the training batches and
    reports ``val/linear_top1`` (and ``val/linear_top5``) on the validation split every epoch.

    The features are those the method computed for its first augmented view (``features`` in
    the ``training_step`` output), so the probe costs no extra backbone pass and sends no
    gradient into the backbone. Validation features come from the backbone in eval mode
    (Lightning's validation loop), so BatchNorm statistics are not touched. Under DDP the probe
    trains on the features gathered from all ranks, so every rank takes the same step from the
    same (seeded) initialisation and the probes stay identical. Samples with a label below 0
    (STL-10's unlabeled images) and samples with non-finite features are left out by weight, not
    by indexing, so the probe never makes the training step wait for the GPU; a batch with fewer
    than two labeled samples is standardised with the running statistics, and one with none
    gives a zero gradient (SGD's momentum still carries the earlier steps). A BatchNorm without
    parameters standardises the features before the linear layer (the linear probe of He et al.,
    MAE, 2022), so one learning rate suits every backbone width and every stage of training.
    Probe weights and optimizer state are saved in checkpoints.

    Labels from a separate evaluation set (``--data.eval_dataset``, needed when the training
    images are unlabeled): the training batches carry no labels the probe could learn from (or
    labels of other classes), and training the probe online on ``eval_dataset``'s images would
    take a second augmented loader and a backbone pass per step. Instead, at each validation
    epoch the probe encodes ``eval_dataset``'s labelled training split once (un-augmented, the
    backbone in eval mode, as the kNN monitor builds its bank), standardises the features with
    their mean and variance and fits its linear layer on them from its seeded initialisation
    for ``fit_epochs`` epochs (SGD with ``lr``, ``momentum`` and ``weight_decay``, cosine
    schedule: :func:`~rotaux.eval.linear.train_linear_classifier`), then reports
    ``val/linear_top1`` on ``eval_dataset``'s validation split. That is linear evaluation on
    frozen features of the current backbone: comparable over epochs and across runs, costing
    one pass over the evaluation training split per validation. Under DDP every rank encodes
    its share, the features are gathered, and every rank fits the same classifier.

    Without any labels (unlabeled training images and no ``eval_dataset``) the probe is
    switched off with one warning that names ``--data.eval_dataset``.

    Online numbers track training progress; they are not the offline linear-evaluation protocol.

    Args:
        lr: SGD learning rate of the probe (solo-learn's ``classifier_lr``).
        momentum: SGD momentum.
        weight_decay: L2 penalty of the probe.
        seed: seed of the probe's initialisation.
        fit_epochs: epochs of the fit on ``eval_dataset``'s cached features, at every
            validation (only with ``--data.eval_dataset``).
    """

    def __init__(
        self,
        lr: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        seed: int = 0,
        fit_epochs: int = 20,
    ) -> None:
        if fit_epochs < 1:
            raise RotauxError(f"OnlineLinearProbe fit_epochs must be >= 1, got {fit_epochs}.")
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.seed = seed
        self.fit_epochs = fit_epochs
        self.classifier: nn.Sequential | None = None
        self.optimizer: torch.optim.SGD | None = None
        self._pending_state: dict[str, Any] | None = None
        self.off = False
        self.fits_on_eval_dataset = False
        self._fitted = False

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.off = switch_off_without_labels(
            trainer, "The online linear probe", ("val/linear_top1", "val/linear_top5")
        )
        if self.off:
            return
        self.fits_on_eval_dataset = evaluation_data(trainer) == "eval_dataset"
        num_classes = trainer.datamodule.num_classes
        if self.classifier is None or self.classifier[-1].out_features != num_classes:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                self.classifier = nn.Sequential(
                    nn.BatchNorm1d(pl_module.num_features, affine=False),
                    nn.Linear(pl_module.num_features, num_classes),
                )
            self.optimizer = torch.optim.SGD(
                self.classifier.parameters(),
                lr=self.lr,
                momentum=self.momentum,
                weight_decay=self.weight_decay,
            )
        self.top1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.top5 = MulticlassAccuracy(num_classes, top_k=min(5, num_classes), average="micro")
        if self._pending_state is not None:
            self.load_state_dict(self._pending_state)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self.off:
            self._to(pl_module.device)

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self.off:
            self._to(pl_module.device)

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._fitted = False
        if self.off or not self.fits_on_eval_dataset or trainer.sanity_checking:
            return
        self.fit_on_eval_dataset(trainer, pl_module)
        self._fitted = True

    @torch.no_grad()
    def fit_on_eval_dataset(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Fit the probe on the cached features of the evaluation set's labelled training
        split (see the class docstring)."""
        datamodule = trainer.datamodule
        dataset = datamodule.eval_train_dataset()
        with trainer.precision_plugin.forward_context():
            features, labels = extract_features(
                pl_module,
                Subset(dataset, labeled_indices(dataset)),
                datamodule.normalize,
                pl_module.num_features,
                pl_module.device,
                datamodule.batch_size,
                datamodule.num_workers,
            )
        norm, linear = self.classifier
        norm.running_mean.copy_(features.mean(dim=0))
        norm.running_var.copy_(features.var(dim=0, unbiased=False))
        norm.eval()
        # `rotaux validate` runs under inference mode, whose tensors cannot enter autograd: the
        # classifier trains on ordinary copies
        with torch.inference_mode(False):
            standardised, labels = norm(features.clone()), labels.clone()
            fitted = train_linear_classifier(
                standardised,
                labels,
                linear.out_features,
                epochs=self.fit_epochs,
                lr=self.lr,
                momentum=self.momentum,
                weight_decay=self.weight_decay,
                batch_size=datamodule.batch_size,
                seed=self.seed,
            )
        linear.load_state_dict(fitted.state_dict())

    def _to(self, device: torch.device) -> None:
        self.classifier.to(device)
        self.top1.to(device)
        self.top5.to(device)
        for state in self.optimizer.state.values():
            for key, value in state.items():
                if isinstance(value, torch.Tensor):
                    state[key] = value.to(device)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.off or self.fits_on_eval_dataset:
            return
        features, labels = outputs["features"].float(), batch["label"]
        if trainer.world_size > 1:
            features = pl_module.all_gather(features).flatten(0, 1)
            labels = pl_module.all_gather(labels).flatten(0, 1)
        # Samples without a label (STL-10's unlabeled images) or with non-finite features (a step
        # that the divergence guard skips) are masked out by weight rather than indexed away, so
        # the training step never waits for the device to count them.
        weights = ((labels >= 0) & features.isfinite().all(dim=1)).float()
        features = torch.where(weights[:, None] > 0, features, 0.0)
        self.classifier.train()
        with torch.autocast(device_type=features.device.type, enabled=False):
            standardised = _masked_batch_norm(self.classifier[0], features, weights)
            logits = self.classifier[1](standardised)
            per_sample = F.cross_entropy(logits, labels.clamp(min=0), reduction="none")
            loss = (per_sample * weights).sum() / weights.sum().clamp(min=1)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        pl_module.log("train/linear_loss", loss.detach())

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self.off or (self.fits_on_eval_dataset and not self._fitted):
            return
        labels = batch["label"]
        labeled = labels >= 0
        self.classifier.eval()
        with torch.autocast(device_type=labels.device.type, enabled=False):
            logits = self.classifier(outputs["features"].float()[labeled])
        self.top1.update(logits, labels[labeled])
        self.top5.update(logits, labels[labeled])

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.off or (self.fits_on_eval_dataset and not self._fitted):
            return
        if trainer.sanity_checking:
            self.top1.reset()
            self.top5.reset()
            return
        pl_module.log_dict(
            {"val/linear_top1": self.top1.compute(), "val/linear_top5": self.top5.compute()}
        )
        self.top1.reset()
        self.top5.reset()

    def state_dict(self) -> dict[str, Any]:
        if self.classifier is None:
            return {}
        return {
            "classifier": self.classifier.state_dict(),
            "optimizer": self.optimizer.state_dict(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not state_dict:
            return
        if self.classifier is None:
            self._pending_state = state_dict
            return
        self.classifier.load_state_dict(state_dict["classifier"])
        self.optimizer.load_state_dict(state_dict["optimizer"])
        self._pending_state = None


def _masked_batch_norm(
    norm: nn.BatchNorm1d, features: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Training-mode ``norm(features)`` with the batch statistics of the samples of weight 1 only.

    Batches with fewer than two such samples leave the running statistics alone (two samples are
    the fewest that have a variance) and are standardised with them instead.
    """
    count = weights.sum()
    enough = count >= 2
    share = weights / count.clamp(min=1)
    mean = share @ features
    variance = share @ (features - mean).square()
    unbiased = variance * count / (count - 1).clamp(min=1)
    with torch.no_grad():
        momentum = norm.momentum
        norm.running_mean.copy_(
            torch.where(enough, norm.running_mean.lerp(mean, momentum), norm.running_mean)
        )
        norm.running_var.copy_(
            torch.where(enough, norm.running_var.lerp(unbiased, momentum), norm.running_var)
        )
    mean = torch.where(enough, mean, norm.running_mean)
    variance = torch.where(enough, variance, norm.running_var)
    return (features - mean) * torch.rsqrt(variance + norm.eps)
