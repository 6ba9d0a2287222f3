"""Fine-tuning of a pretrained backbone with a linear head, and the linear protocol with
augmentation (the same training with the backbone frozen).

The recipe is SimCLR's fine-tuning (Chen et al., "A Simple Framework for Contrastive Learning of
Visual Representations", ICML 2020, Appendix B.5, used there for the 1% and 10% label subsets
of ImageNet): SGD with Nesterov momentum 0.9, learning rate 0.05 per 256 images (scaled
linearly with the batch), no warm-up, cosine decay, no weight decay nor other regularisation,
random resized crop and flip only, and a zero-initialised linear head (the ``zero_init_logits
_layer`` of SimCLR's code). The whole backbone trains, BatchNorm with batch statistics. It suits
ResNets; ViTs are usually fine-tuned with MAE's recipe (AdamW, layer-wise decay, mixup,
RandAugment), which rotaux does not implement.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from lightning import LightningModule
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from rotaux.export import PretrainedBackbone
from rotaux.optim import warmup_cosine_scheduler


class FineTune(LightningModule):
    """A pretrained backbone and a linear head trained on labels (see the module docstring).

    With ``freeze_backbone`` the backbone gets no gradient and stays in eval mode (its
    BatchNorm statistics those of pretraining): linear evaluation on augmented images, with
    solo-learn's linear recipe (plain momentum SGD, 0.1 per 256 images) given as options.
    Validation logs ``val/top1`` and ``val/top5``.

    Args:
        pretrained: the backbone's architecture and weights (:func:`rotaux.export.read_pretrained`).
        num_classes: classes of the head.
        freeze_backbone: train the head only.
        lr: learning rate per 256 images.
        momentum: SGD momentum.
        nesterov: Nesterov momentum.
        weight_decay: L2 penalty on every parameter.
        label_smoothing: cross-entropy label smoothing.
        batch_size: images per step (scales the learning rate).
    """

    def __init__(
        self,
        pretrained: PretrainedBackbone,
        num_classes: int,
        freeze_backbone: bool = False,
        lr: float = 0.05,
        momentum: float = 0.9,
        nesterov: bool = True,
        weight_decay: float = 0.0,
        label_smoothing: float = 0.0,
        batch_size: int = 256,
    ) -> None:
        super().__init__()
        self.backbone = pretrained.build()
        self.backbone_config = pretrained.backbone
        self.head = nn.Linear(self.backbone.num_features, num_classes)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.freeze_backbone = freeze_backbone
        if freeze_backbone:
            self.backbone.requires_grad_(False)
            # Lightning keeps the modes modules are in; train() below keeps this one for callers
            self.backbone.eval()
        self.lr = lr * batch_size / 256
        self.momentum = momentum
        self.nesterov = nesterov
        self.weight_decay = weight_decay
        self.label_smoothing = label_smoothing
        self.top1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.top5 = MulticlassAccuracy(num_classes, top_k=min(5, num_classes), average="micro")

    def train(self, mode: bool = True) -> FineTune:
        super().train(mode)
        if self.freeze_backbone:
            self.backbone.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits = self(batch["image"]).float()
        loss = F.cross_entropy(logits, batch["label"], label_smoothing=self.label_smoothing)
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        logits = self(batch["image"]).float()
        self.top1.update(logits, batch["label"])
        self.top5.update(logits, batch["label"])
        self.log_dict({"val/top1": self.top1, "val/top5": self.top5})

    def configure_optimizers(self) -> dict[str, Any]:
        parameters = [param for param in self.parameters() if param.requires_grad]
        optimizer = torch.optim.SGD(
            parameters,
            lr=self.lr,
            momentum=self.momentum,
            nesterov=self.nesterov,
            weight_decay=self.weight_decay,
        )
        total_steps = self.trainer.estimated_stepping_batches
        scheduler = warmup_cosine_scheduler(optimizer, 0, max(1, math.ceil(total_steps)), 0.0)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
