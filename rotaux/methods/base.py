"""The small base every method stands on: a backbone, the optimizer and its schedules, validation
features for the evaluation callbacks, and a record of the architecture in each checkpoint."""

from __future__ import annotations

import math
from typing import Any

import torch
from lightning import LightningModule
from torch import nn

from rotaux.architecture import Architecture
from rotaux.backbones import Backbone, ResNet
from rotaux.checkpointing import restore_rng_states, rng_states
from rotaux.errors import RotauxError
from rotaux.optim import (
    OptimizerConfig,
    ParameterGroup,
    build_optimizer,
    set_weight_decay,
    warmup_cosine_scheduler,
)
from rotaux.staging import commit_staged_updates, staged_buffer_names


class SSLMethod(LightningModule):
    """Base class of the self-supervised methods.

    A method subclass takes its own options as typed arguments and passes the base options on
    with ``**base_options`` to ``super().__init__``; ``rotaux fit --model X --help`` and
    ``--print_config`` list both (jsonargparse follows the call), and a base option is added
    here alone. The subclass builds its heads in ``__init__`` and its ``training_step`` returns
    ``self.step_output(ssl_loss, batch, features)``; mixing in
    :class:`~rotaux.methods.rotation.RotationAuxMixin` adds the rotation loss there.

    Training batches are dicts with ``views`` (list of normalised image tensors), ``label`` (used
    only by evaluation callbacks) and, when the rotation auxiliary is on, ``rotation`` and
    ``rotation_labels``. Validation batches have ``image`` and ``label``.

    Args:
        backbone: the architecture (:mod:`rotaux.backbones`: ``ResNet``, ``WideResNet``,
            ``ViT``, ``Swin``, ``ConvNeXt``, ``TimmModel``), for example ``--model.backbone ViT
            --model.backbone.size small``.
        optimizer: optimizer, learning-rate scaling, warm-up/cosine schedule and weight decay.
        channels_last: keep the network in channels-last memory format (faster convolutions on
            recent CPUs and on GPUs with tensor cores).
    """

    def __init__(
        self,
        backbone: Backbone = ResNet(),
        optimizer: OptimizerConfig = OptimizerConfig(),
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.backbone_config = backbone
        self.backbone = backbone.build()
        self.optimizer_config = optimizer
        self.channels_last = channels_last
        self.total_steps = 0

    @property
    def num_features(self) -> int:
        """Dimension of the pooled backbone features."""
        return self.backbone.num_features

    @property
    def num_global_views(self) -> int:
        """How many leading views of a training batch are large (global) crops."""
        return 2

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features of ``images`` (the representation being learned)."""
        return self.backbone(images)

    def setup(self, stage: str) -> None:
        if self.channels_last:
            self.to(memory_format=torch.channels_last)
        # queues, banks and centers: tens of MiB that DDP would otherwise re-send every step
        self._ddp_params_and_buffers_to_ignore = staged_buffer_names(self)

    def total_loss(self, ssl_loss: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        """The loss to optimise; auxiliary-task mixins add their terms here."""
        return ssl_loss

    def step_output(
        self, ssl_loss: torch.Tensor, batch: dict[str, Any], features: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Log the losses and return what ``training_step`` returns: the loss to optimise and the
        detached features of the first view for the online evaluation callbacks."""
        loss = self.total_loss(ssl_loss, batch)
        self.log_dict({"train/ssl_loss": ssl_loss, "train/loss": loss})
        return {"loss": loss, "features": features.detach()}

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict:
        return {"features": self.backbone(batch["image"])}

    def validation_embeddings(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """The embeddings that the collapse monitor watches, computed from the pooled backbone
        ``features`` of validation images: the features themselves and, for a method with a
        ``projector``, its output. Override it to watch another head."""
        embeddings = {"backbone": features}
        projector = getattr(self, "projector", None)
        if isinstance(projector, nn.Module):
            embeddings["projector"] = projector(features)
        return embeddings

    def global_batch_size(self) -> int:
        """Images per optimizer step over all devices and accumulated batches."""
        trainer = self.trainer
        per_device = getattr(trainer.datamodule, "batch_size", None)
        if per_device is None:
            return self.optimizer_config.reference_batch_size
        return per_device * trainer.world_size * trainer.accumulate_grad_batches

    def parameter_groups(self) -> list[ParameterGroup]:
        """The parts of the network with their own optimisation settings (learning-rate
        multiplier, fixed rate, weight decay and LARS adaptation on or off). One group of every
        parameter by default; override it to single out a part (SimSiam's predictor)."""
        return [ParameterGroup(list(self.named_parameters()))]

    def weight_decay_exemptions(self) -> frozenset[str]:
        """Full names of the parameters that the backbone keeps out of weight decay."""
        return frozenset(
            f"backbone.{name}" for name in self.backbone_config.no_weight_decay(self.backbone)
        )

    def configure_optimizers(self) -> dict:
        config = self.optimizer_config
        optimizer = build_optimizer(
            self.parameter_groups(),
            config,
            config.scaled_lr(self.global_batch_size()),
            self.weight_decay_exemptions(),
        )
        total_steps = self.trainer.estimated_stepping_batches
        if math.isinf(total_steps):
            raise RotauxError(
                "The schedules need a finite run: set --trainer.max_epochs or --trainer.max_steps."
            )
        self.total_steps = int(total_steps)
        batches_per_epoch = self.trainer.num_training_batches
        if math.isinf(batches_per_epoch):
            # a max_steps-only run has not sized its data loader yet
            batches_per_epoch = len(self.trainer.datamodule.train_dataloader())
        steps_per_epoch = math.ceil(batches_per_epoch / self.trainer.accumulate_grad_batches)
        scheduler = warmup_cosine_scheduler(
            optimizer,
            warmup_steps=round(config.warmup_epochs * steps_per_epoch),
            total_steps=self.total_steps,
            min_ratio=config.min_lr_ratio,
        )
        schedule = {"scheduler": scheduler, "interval": "step"}
        return {"optimizer": optimizer, "lr_scheduler": schedule}

    def optimizer_step(
        self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None
    ) -> None:
        set_weight_decay(optimizer, self.optimizer_config, self.global_step, self.total_steps)
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        # queues and centers staged their updates in the forward pass (rotaux.staging); the
        # divergence guard has discarded them if it dropped this step
        commit_staged_updates(self)

    def architecture(self) -> Architecture:
        """What a checkpoint must match to be loaded into this module."""
        return Architecture(type(self).__name__, self.backbone_config)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["rotaux_architecture"] = self.architecture().record()
        # the states of this rank; Lightning seeds every rank alike and they draw alike, so they
        # are every rank's
        checkpoint["rotaux_rng_states"] = rng_states()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = Architecture.from_checkpoint(checkpoint)
        if saved is not None:
            saved.check_loads_into(self.architecture())
        # a resumed fit continues the random draws (rotation_copies=1) where they stopped;
        # load_from_checkpoint outside a Trainer leaves the caller's generators alone
        if self._trainer is not None and "rotaux_rng_states" in checkpoint:
            restore_rng_states(checkpoint["rotaux_rng_states"])
