"""Offline linear evaluation: a linear classifier on the features of a frozen pretrained backbone.

The defaults (SGD, learning rate 0.1 for a batch of 256, momentum 0.9, no weight decay, 100
epochs, random-resized-crop and flip augmentation) are solo-learn's linear-evaluation recipe
(``scripts/linear/imagenet/byol.yaml``); solo-learn decays the rate in steps at epochs 60 and
80, rotaux uses its cosine schedule.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torch.utils.data import Dataset, Subset
from torchmetrics.classification import MulticlassAccuracy

from rotaux.backbones import Backbone
from rotaux.data.transforms import ViewAugmentation
from rotaux.errors import RotauxError
from rotaux.eval.features import extract_features, labeled_indices
from rotaux.export import PretrainedBackbone, read_pretrained
from rotaux.methods.base import SSLMethod
from rotaux.optim import OptimizerConfig, warmup_cosine_scheduler

LINEAR_EVAL_VIEW = ViewAugmentation(
    color_jitter_prob=0.0, grayscale_prob=0.0, blur_prob=0.0, solarization_prob=0.0
)
"""Random resized crop (scale 0.08-1) and horizontal flip: the standard linear-evaluation
augmentation."""


def train_linear_classifier(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    epochs: int = 100,
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    batch_size: int = 256,
    seed: int = 0,
) -> nn.Linear:
    """Train ``nn.Linear(F, num_classes)`` on fixed ``features`` with SGD and a cosine schedule
    (per step, down to 0), in fp32, on the features' device. Samples with labels below 0 are
    skipped. The initialisation and the shuffling are seeded by ``seed`` alone; the global random
    state is left untouched."""
    labeled = labels >= 0
    features, labels = features[labeled].float(), labels[labeled]
    if len(features) == 0:
        raise RotauxError("Linear evaluation needs labelled training features; none were given.")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        classifier = nn.Linear(features.shape[1], num_classes)
    classifier.to(features.device)
    optimizer = torch.optim.SGD(
        classifier.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay
    )
    total_steps = epochs * math.ceil(len(features) / batch_size)
    scheduler = warmup_cosine_scheduler(optimizer, 0, total_steps, 0.0)
    generator = torch.Generator().manual_seed(seed)
    with torch.enable_grad(), torch.autocast(features.device.type, enabled=False):
        for _ in range(epochs):
            order = torch.randperm(len(features), generator=generator).to(features.device)
            for indices in order.split(batch_size):
                loss = F.cross_entropy(classifier(features[indices]), labels[indices])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
    return classifier


@torch.no_grad()
def classifier_accuracy(
    classifier: nn.Module, features: torch.Tensor, labels: torch.Tensor
) -> dict[str, float]:
    """Top-1 and top-5 accuracy (top-k with k = min(5, classes)) over the samples with labels
    >= 0, as ``{"top1", "top5"}`` fractions."""
    labeled = labels >= 0
    labels = labels[labeled]
    logits = classifier(features[labeled].float())
    ranked = logits.topk(min(5, logits.shape[1]), dim=1).indices
    hits = ranked == labels.unsqueeze(1)
    return {"top1": hits[:, 0].float().mean().item(), "top5": hits.any(dim=1).float().mean().item()}


def linear_eval_on_features(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    val_features: torch.Tensor,
    val_labels: torch.Tensor,
    epochs: int = 100,
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    batch_size: int = 256,
    num_classes: int | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Linear evaluation on precomputed features: :func:`train_linear_classifier` on the training
    features, then :func:`classifier_accuracy` on the validation features. ``num_classes``
    defaults to the largest label + 1. Returns ``{"top1", "top5"}``."""
    if num_classes is None:
        num_classes = int(max(train_labels.max(), val_labels.max())) + 1
    classifier = train_linear_classifier(
        train_features,
        train_labels,
        num_classes,
        epochs=epochs,
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        batch_size=batch_size,
        seed=seed,
    )
    return classifier_accuracy(classifier, val_features, val_labels)


def _resolve_backbone(pretrained: PretrainedBackbone, backbone: Backbone | None) -> Backbone:
    if backbone is not None and backbone != pretrained.backbone:
        raise RotauxError(
            f"{pretrained.source} holds a {pretrained.method} backbone {pretrained.backbone}, "
            f"but this run asks for {backbone}. Drop --model.backbone (LinearEval takes the "
            "architecture from the checkpoint) or pass the checkpoint of the architecture you "
            "want."
        )
    return pretrained.backbone


class LinearEval(SSLMethod):
    """Offline linear evaluation of a pretrained backbone, reporting ``val/top1`` and
    ``val/top5``: ``rotaux fit --model rotaux.eval.LinearEval --model.checkpoint PATH
    --trainer.max_epochs 100 --data.dataset CIFAR10 ...``.

    The backbone comes from ``checkpoint`` and stays frozen: no gradient, and in eval mode even
    while the classifier trains, so its BatchNorm statistics are those of pretraining. Training
    batches come from the same :class:`~rotaux.data.SSLDataModule` as pretraining; the classifier
    trains on ``views[0]``, so give the data module the linear-evaluation augmentation
    :data:`LINEAR_EVAL_VIEW` (random resized crop and flip; the data module's default is BYOL's
    pretraining augmentation). Validation images are resized and centre-cropped. Labels below 0
    are skipped. With ``--data.eval_dataset`` (pretraining images without labels) the classifier
    trains on that set's training split and is validated on its validation split
    (``trains_on_labels`` tells the data module so); with no labels anywhere the data module
    stops before training with a :class:`~rotaux.errors.RotauxError` naming that option. The
    optimizer and cosine schedule follow ``optimizer`` (see the module docstring for the
    recipe); the run's checkpoints hold the backbone and the classifier.

    With ``precompute_features`` the backbone encodes the un-augmented training and validation
    images once, a classifier trains on the cached features for ``--trainer.max_epochs`` epochs
    (:func:`train_linear_classifier`, SGD with the optimizer's rate for the data module's batch
    size, momentum and weight decay) and becomes ``classifier`` (so a ``last.ckpt`` written as the
    run ends holds it), the accuracies are logged, and the run stops before the first augmented
    epoch. This is much faster and usually a little less accurate than training on augmented
    images.

    Args:
        checkpoint: the ``.ckpt`` that ``rotaux fit`` wrote, or a folder written by
            ``rotaux export``.
        backbone: expected backbone architecture; ``None`` takes the checkpoint's, a different
            value is an error.
        optimizer: optimizer of the classifier (SGD, lr 0.1 per 256 images, momentum 0.9, no
            weight decay, no warm-up, cosine decay).
        channels_last: keep the network in channels-last memory format.
        precompute_features: train on cached features of un-augmented images (fast path).
    """

    trains_on_labels = True
    """The data module trains this model on ``eval_dataset``'s training split when one is
    given."""

    def __init__(
        self,
        checkpoint: str,
        backbone: Backbone | None = None,
        optimizer: OptimizerConfig = OptimizerConfig(
            name="sgd", lr=0.1, weight_decay=0.0, warmup_epochs=0.0
        ),
        channels_last: bool = True,
        precompute_features: bool = False,
    ) -> None:
        pretrained = read_pretrained(checkpoint)
        # Rebinding the argument makes save_hyperparameters (in SSLMethod) record the resolved
        # architecture, so this run's checkpoints name it.
        backbone = _resolve_backbone(pretrained, backbone)
        super().__init__(backbone=backbone, optimizer=optimizer, channels_last=channels_last)
        self.backbone.load_state_dict(pretrained.state_dict)
        self.backbone.requires_grad_(False)
        self.backbone.eval()
        self.precompute_features = precompute_features
        self.classifier: nn.Linear | None = None

    def train(self, mode: bool = True) -> LinearEval:
        """Set the classifier's mode; the frozen backbone always stays in eval mode."""
        super().train(mode)
        self.backbone.eval()
        return self

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if self.classifier is None:
            num_classes = self.trainer.datamodule.num_classes
            self.classifier = nn.Linear(self.num_features, num_classes)
            self.val_top1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
            self.val_top5 = MulticlassAccuracy(
                num_classes, top_k=min(5, num_classes), average="micro"
            )

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            features = self.backbone(batch["views"][0])
        labels = batch["label"]
        labeled = labels >= 0
        logits = self.classifier(features[labeled]).float()
        # a batch without labels (STL-10's unlabeled images) gives a zero loss, not 0/0
        loss = F.cross_entropy(logits, labels[labeled], reduction="sum") / labeled.sum().clamp(
            min=1
        )
        self.log("train/loss", loss)
        return {"loss": loss, "features": features}

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict:
        features = self.backbone(batch["image"])
        labels = batch["label"]
        labeled = labels >= 0
        logits = self.classifier(features[labeled]).float()
        self.val_top1.update(logits, labels[labeled])
        self.val_top5.update(logits, labels[labeled])
        self.log_dict({"val/top1": self.val_top1, "val/top5": self.val_top5})
        return {"features": features}

    def on_train_start(self) -> None:
        if not self.precompute_features:
            return
        results = self.fit_on_cached_features()
        for logger in self.loggers:
            logger.log_metrics(results, step=self.global_step)
        rank_zero_info(
            "Linear evaluation on cached features: "
            + ", ".join(f"{key} {value:.4f}" for key, value in results.items())
        )
        self.trainer.should_stop = True

    def _cached_features(self, dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
        datamodule = self.trainer.datamodule
        with self.trainer.precision_plugin.forward_context():
            return extract_features(
                self.backbone,
                Subset(dataset, labeled_indices(dataset)),
                datamodule.normalize,
                self.num_features,
                self.device,
                datamodule.batch_size,
                datamodule.num_workers,
            )

    def fit_on_cached_features(self) -> dict[str, float]:
        """The ``precompute_features`` path: train ``classifier`` on the cached features of the
        un-augmented training images and return ``{"val/top1", "val/top5"}`` on the cached
        validation features. Every rank computes the same classifier from the gathered
        features."""
        epochs = self.trainer.max_epochs
        if epochs is None or epochs < 1:
            raise RotauxError(
                "precompute_features trains the classifier for --trainer.max_epochs epochs: set "
                "it (100 in the usual protocol)."
            )
        datamodule = self.trainer.datamodule
        train_features, train_labels = self._cached_features(datamodule.eval_train_dataset())
        val_features, val_labels = self._cached_features(datamodule.val_dataloader().dataset)
        config = self.optimizer_config
        classifier = train_linear_classifier(
            train_features,
            train_labels,
            datamodule.num_classes,
            epochs=epochs,
            lr=config.scaled_lr(datamodule.batch_size),
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            batch_size=datamodule.batch_size,
            seed=torch.initial_seed(),
        )
        self.classifier.load_state_dict(classifier.state_dict())
        accuracy = classifier_accuracy(self.classifier, val_features, val_labels)
        return {f"val/{key}": value for key, value in accuracy.items()}
