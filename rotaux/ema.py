"""Exponential moving averages of network weights (BYOL's target network, MoCo's key encoder)."""

from __future__ import annotations

import math

import torch
from torch import nn


def cosine_momentum(step: int, total_steps: int, base: float, final: float) -> float:
    """BYOL's schedule ``final - (final - base) * (cos(pi * step / total_steps) + 1) / 2``.

    Grill et al. 2020, Sec. 3.2: ``tau`` rises from ``base`` (0.996 on ImageNet, 0.99 in the
    CIFAR recipes of solo-learn) at step 0 to ``final`` (1.0) at the last step. It is a function
    of the global step only, so a resumed run uses exactly the momentum of an uninterrupted one.
    """
    if total_steps <= 0:
        return final
    progress = min(step / total_steps, 1.0)
    return final - (final - base) * (math.cos(math.pi * progress) + 1) / 2


@torch.no_grad()
def ema_update_(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """``target = momentum * target + (1 - momentum) * online`` for every parameter, in one fused
    foreach call. Buffers (BatchNorm statistics) are not averaged: the target keeps its own."""
    target_params = [p for p in target.parameters()]
    online_params = [p.detach() for p in online.parameters()]
    if len(target_params) != len(online_params):
        raise ValueError("EMA target and online network have different parameter lists.")
    torch._foreach_lerp_(target_params, online_params, 1.0 - momentum)
