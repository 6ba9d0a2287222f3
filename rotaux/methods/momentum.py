"""Base for methods with a momentum (EMA) target network: BYOL, MoCo, DINO."""

from __future__ import annotations

import copy
from typing import Any

from torch import nn

from rotaux.ema import cosine_momentum, ema_update_
from rotaux.methods.base import SSLMethod


class MomentumMethod(SSLMethod):
    """An :class:`SSLMethod` whose target networks follow the online ones by EMA.

    Register each target with :meth:`momentum_copy`; after every optimizer step the targets move
    towards the online weights with momentum :func:`~rotaux.ema.cosine_momentum` of the global
    step, so the schedule is exact after a resume.

    Args:
        base_momentum: EMA momentum at the first step.
        final_momentum: EMA momentum at the last step.
    """

    def __init__(
        self, base_momentum: float = 0.99, final_momentum: float = 1.0, **base_options: Any
    ) -> None:
        super().__init__(**base_options)
        self.base_momentum = base_momentum
        self.final_momentum = final_momentum
        self._momentum_pairs: list[tuple[nn.Module, nn.Module]] = []

    def momentum_copy(self, online: nn.Module) -> nn.Module:
        """A frozen copy of ``online`` that is updated by EMA after each optimizer step."""
        target = copy.deepcopy(online)
        target.requires_grad_(False)
        self._momentum_pairs.append((online, target))
        return target

    def current_momentum(self) -> float:
        return cosine_momentum(
            self.global_step, self.total_steps, self.base_momentum, self.final_momentum
        )

    def optimizer_step(
        self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None
    ) -> None:
        momentum = self.current_momentum()
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        for online, target in self._momentum_pairs:
            ema_update_(target, online, momentum)

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        # once an epoch (the momentum of the next step): a Python number logged every step
        # costs a host-to-device copy that makes the host wait for the GPU
        self.log("train/ema_momentum", self.current_momentum())
