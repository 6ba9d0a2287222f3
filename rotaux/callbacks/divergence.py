"""No silent NaN training: a training step with a non-finite loss or gradient never reaches the
weights."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Literal

import torch
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn
from torch.optim import Optimizer

from rotaux.checkpointing import checkpoint_folder
from rotaux.distributed import all_reduce_sum
from rotaux.errors import RotauxError
from rotaux.staging import discard_staged_updates, staged_buffer_ids


class NonFiniteLossError(RotauxError):
    """Training produced a non-finite loss or gradient; the message says where and what to do."""


class DivergenceGuard(Callback):
    """Checks every optimizer step, just before the optimizer applies it, that the loss and the
    gradients are finite. Weights only become non-finite through such a step, so stopping or
    skipping it there keeps the model at its last good state. Buffers are kept too: queues and
    centres (modules of :class:`~rotaux.staging.StagedUpdates`) only stage their updates in the
    forward pass, and the guard discards them when it drops a step; the other buffers, which a
    forward pass writes directly (BatchNorm running statistics, a few KiB to MiB), are copied
    before each step and put back. ``copied_bytes`` says how many bytes that copy takes.

    ``stop`` saves that state to ``<run>/checkpoints/before-nonfinite-step=<step>.ckpt`` and ends
    the run with an error naming the step and the logged training terms (``train/ssl_loss``,
    ``train/rot_loss``, ...) that are not finite. Resuming from that file repeats the failing
    batch (with new random rotations for it), so change something first: a lower learning rate, a
    longer warm-up, or ``on_nonfinite="skip"``.

    ``skip`` drops the step's gradients, so the optimizer leaves the weights and its own state
    unchanged, and warns. The learning-rate schedule and the EMA targets still advance, as they do
    for the fp16 steps that a gradient scaler skips. After ``max_consecutive_skips`` skipped steps
    in a row the run stops as with ``stop``: a model that yields NaN at every step is not training.

    Under fp16 mixed precision the gradient scaler already skips steps with overflowing gradients
    (and lowers its scale), so only the loss is checked there. The check costs one device-to-host
    read of a single number per optimizer step, after the backward pass (under DDP after one
    small all-reduce, so that every rank takes the same decision), and the copy of the directly
    written buffers one concatenation per device and dtype. That read is the only time rotaux
    makes a training step wait for the GPU (Lightning reads the logged values every
    ``log_every_n_steps``); ``enabled=False`` removes it, and a non-finite step then reaches the
    weights (and the queues and centres) unnoticed.

    Args:
        on_nonfinite: ``stop`` or ``skip`` (see above).
        max_consecutive_skips: skipped steps in a row after which ``skip`` stops the run.
        enabled: check every step (on by default).
    """

    def __init__(
        self,
        on_nonfinite: Literal["stop", "skip"] = "stop",
        max_consecutive_skips: int = 10,
        enabled: bool = True,
    ) -> None:
        if on_nonfinite not in ("stop", "skip"):
            raise RotauxError(f"on_nonfinite must be 'stop' or 'skip', got {on_nonfinite!r}.")
        self.enabled = enabled
        self.on_nonfinite = on_nonfinite
        self.max_consecutive_skips = max_consecutive_skips
        self.skipped_steps = 0
        self.consecutive_skips = 0
        self._loss_finite: torch.Tensor | None = None
        self._saved_buffers: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}
        self._batch_idx = 0
        # bytes of buffers copied before the latest optimizer step
        self.copied_bytes = 0

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if not self.enabled:
            return
        self._batch_idx = batch_idx
        # once per optimizer step: before the first of the batches that accumulate into it
        if self._loss_finite is None:
            self._saved_buffers = {
                key: torch.cat([buffer.detach().reshape(-1) for buffer in group])
                for key, group in _by_device_and_dtype(_written_buffers(pl_module)).items()
            }
            self.copied_bytes = sum(
                saved.numel() * saved.element_size() for saved in self._saved_buffers.values()
            )

    def on_before_backward(
        self, trainer: Trainer, pl_module: LightningModule, loss: torch.Tensor
    ) -> None:
        if not self.enabled:
            return
        # with gradient accumulation several backward passes feed one optimizer step
        finite = torch.isfinite(loss.detach()).all()
        self._loss_finite = finite if self._loss_finite is None else self._loss_finite & finite

    def on_before_optimizer_step(
        self, trainer: Trainer, pl_module: LightningModule, optimizer: Optimizer
    ) -> None:
        if not self.enabled:
            return
        loss_finite = self._loss_finite
        self._loss_finite = None
        finite = torch.ones((), dtype=torch.bool, device=pl_module.device)
        if loss_finite is not None:
            finite = finite & loss_finite
        if not _uses_grad_scaler(trainer):
            finite = finite & _gradients_finite(optimizer)
        # the one device-to-host read of the step; every rank reads the same verdict
        failed_ranks = all_reduce_sum((~finite).float().reshape(1))
        if not failed_ranks.item():
            self.consecutive_skips = 0
            return
        loss_finite = True if loss_finite is None else bool(loss_finite)
        where = (
            f"global step {trainer.global_step} (epoch {trainer.current_epoch}, "
            f"batch {self._batch_idx})"
        )
        problem = _describe(trainer, loss_finite)
        self._restore_buffers(pl_module)
        discard_staged_updates(pl_module)
        if self.on_nonfinite == "skip" and self.consecutive_skips < self.max_consecutive_skips:
            for group in optimizer.param_groups:
                for param in group["params"]:
                    param.grad = None
            self.skipped_steps += 1
            self.consecutive_skips += 1
            rank_zero_warn(f"Skipped the optimizer step at {where}: {problem}.")
            return
        raise NonFiniteLossError(
            f"Training stopped at {where}: {problem}. {self._save_last_good(trainer, pl_module)} "
            "Lower the learning rate or lengthen the warm-up, or skip such steps with "
            "DivergenceGuard(on_nonfinite='skip')."
        )

    def _restore_buffers(self, pl_module: LightningModule) -> None:
        for key, group in _by_device_and_dtype(_written_buffers(pl_module)).items():
            saved = self._saved_buffers[key].split([buffer.numel() for buffer in group])
            with torch.no_grad():
                for buffer, values in zip(group, saved, strict=True):
                    buffer.copy_(values.view_as(buffer))

    def _save_last_good(self, trainer: Trainer, pl_module: LightningModule) -> str:
        if not all(torch.isfinite(param).all() for param in pl_module.parameters()):
            return (
                "The weights were already non-finite (an earlier step with a finite loss and "
                "gradients overflowed them), so nothing was saved: resume from an earlier "
                "checkpoint."
            )
        path = checkpoint_folder(trainer) / f"before-nonfinite-step={trainer.global_step}.ckpt"
        trainer.save_checkpoint(path)
        return f"The weights before this step are saved in {path}."

    def state_dict(self) -> dict[str, Any]:
        return {"skipped_steps": self.skipped_steps, "consecutive_skips": self.consecutive_skips}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skipped_steps = state_dict["skipped_steps"]
        self.consecutive_skips = state_dict["consecutive_skips"]


def _written_buffers(module: LightningModule) -> list[torch.Tensor]:
    """The buffers that a forward pass may write directly: all but those of staged-update
    modules, which change only when a step is committed."""
    staged = staged_buffer_ids(module)
    return [buffer for buffer in module.buffers() if id(buffer) not in staged]


def _by_device_and_dtype(
    tensors: Iterable[torch.Tensor],
) -> dict[tuple[torch.device, torch.dtype], list[torch.Tensor]]:
    groups: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
    for tensor in tensors:
        groups.setdefault((tensor.device, tensor.dtype), []).append(tensor)
    return groups


def _uses_grad_scaler(trainer: Trainer) -> bool:
    return getattr(trainer.precision_plugin, "scaler", None) is not None


def _gradients_finite(optimizer: Optimizer) -> torch.Tensor:
    """A boolean tensor on the gradients' device (a CPU one when there are no gradients): are
    all gradients finite?"""
    params = [
        param
        for group in optimizer.param_groups
        for param in group["params"]
        if param.grad is not None
    ]
    if not params:
        return torch.tensor(True)
    # the total norm with torch's fused kernels; an infinite max_norm leaves the gradients as
    # they are, and the norm is finite exactly when every gradient is
    return torch.isfinite(torch.nn.utils.clip_grad_norm_(params, max_norm=math.inf))


def _describe(trainer: Trainer, loss_finite: bool) -> str:
    terms = {
        name: float(value)
        for name, value in trainer.callback_metrics.items()
        if name.startswith("train/") and not torch.isfinite(value).all()
    }
    if terms:
        return "non-finite " + ", ".join(f"{name}={value}" for name, value in terms.items())
    if not loss_finite:
        return "non-finite loss"
    return "finite loss but non-finite gradients"
