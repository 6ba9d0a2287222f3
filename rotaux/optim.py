"""Optimizers and learning-rate schedules for pretraining.

LARS follows You et al., "Large Batch Training of Convolutional Networks" (2017) as used by
SimCLR and BYOL: biases and normalisation parameters (every parameter with fewer than two
dimensions) get neither weight decay nor the layer-wise trust ratio.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from rotaux.errors import RotauxError


@dataclass(frozen=True)
class OptimizerConfig:
    """Optimizer and schedule of the pretraining network.

    Defaults are the CIFAR BYOL recipe of solo-learn (LARS, lr 1.0 for a batch of 256, eta 0.02,
    weight decay 1e-5, 10 warm-up epochs then cosine decay).

    Args:
        name: ``lars``, ``sgd`` or ``adamw``.
        lr: learning rate for a global batch of ``reference_batch_size`` images.
        lr_scaling: how ``lr`` scales with the global batch (per-device batch x devices x nodes x
            gradient accumulation): ``linear`` (Goyal et al. 2017, used by SimCLR/BYOL/solo-learn),
            ``sqrt`` or ``none``.
        reference_batch_size: the global batch at which ``lr`` applies unscaled.
        weight_decay: L2 penalty, not applied to biases and normalisation parameters (nor to a
            ViT's position embedding and CLS token); the value at the first step when
            ``final_weight_decay`` is set.
        final_weight_decay: weight decay at the last step, reached along a cosine from
            ``weight_decay`` (DINO's ViT recipe: 0.04 -> 0.4); ``None`` keeps it constant.
        momentum: SGD/LARS momentum (``beta1`` for AdamW).
        adam_beta2: AdamW's ``beta2``.
        lars_eta: LARS trust coefficient.
        lars_clip: clip the LARS adaptive rate at 1 (LARC clipping, as in solo-learn).
        warmup_epochs: linear warm-up length in epochs (fractions allowed), counted in steps.
        min_lr_ratio: the final learning rate as a fraction of the peak.
    """

    name: Literal["lars", "sgd", "adamw"] = "lars"
    lr: float = 1.0
    lr_scaling: Literal["linear", "sqrt", "none"] = "linear"
    reference_batch_size: int = 256
    weight_decay: float = 1e-5
    final_weight_decay: float | None = None
    momentum: float = 0.9
    adam_beta2: float = 0.999
    lars_eta: float = 0.02
    lars_clip: bool = True
    warmup_epochs: float = 10.0
    min_lr_ratio: float = 0.0

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise RotauxError(f"optimizer.lr must be positive, got {self.lr}.")
        if self.weight_decay < 0 or (self.final_weight_decay or 0) < 0:
            raise RotauxError(
                "optimizer.weight_decay and final_weight_decay must be >= 0, got "
                f"{self.weight_decay} and {self.final_weight_decay}."
            )
        if self.warmup_epochs < 0:
            raise RotauxError(f"optimizer.warmup_epochs must be >= 0, got {self.warmup_epochs}.")

    def scaled_lr(self, global_batch_size: int) -> float:
        ratio = global_batch_size / self.reference_batch_size
        if self.lr_scaling == "linear":
            return self.lr * ratio
        if self.lr_scaling == "sqrt":
            return self.lr * math.sqrt(ratio)
        return self.lr


class LARS(Optimizer):
    """SGD with momentum and layer-wise adaptive rate scaling.

    For a parameter group with ``lars_exclude=False`` the update direction is
    ``(g + wd * w) * eta * ||w|| / (||g|| + wd * ||w||)``; with ``lars_clip`` the ratio is divided
    by the learning rate and clipped at 1. Where either norm is zero the ratio is 1 (after
    clipping, as in LARC and solo-learn).
    Groups with ``lars_exclude=True`` take plain SGD-with-momentum steps on ``g + wd * w``
    (``wd`` is 0 for biases and normalisation parameters). No step synchronises
    with the host.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict],
        lr: float,
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        eta: float = 0.02,
        clip: bool = True,
    ) -> None:
        defaults = dict(
            lr=lr,
            weight_decay=weight_decay,
            momentum=momentum,
            eta=eta,
            clip=clip,
            lars_exclude=False,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102 - the torch.optim signature
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                update = param.grad
                weight_decay = group["weight_decay"]
                if not group["lars_exclude"]:
                    param_norm = torch.linalg.vector_norm(param)
                    grad_norm = torch.linalg.vector_norm(update)
                    ratio = group["eta"] * param_norm / (grad_norm + weight_decay * param_norm)
                    if group["clip"]:
                        ratio = torch.clamp(ratio / group["lr"], max=1.0)
                    ratio = torch.where((param_norm > 0) & (grad_norm > 0), ratio, 1.0)
                    update = update.add(param, alpha=weight_decay).mul_(ratio)
                elif weight_decay:
                    # a decayed group without the trust ratio: plain SGD with weight decay
                    update = update.add(param, alpha=weight_decay)
                state = self.state[param]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = update.clone()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(update)
                param.add_(state["momentum_buffer"], alpha=-group["lr"])
        return loss


@dataclass
class ParameterGroup:
    """Parameters that share optimisation settings. :meth:`SSLMethod.parameter_groups
    <rotaux.methods.SSLMethod.parameter_groups>` returns these; :func:`build_optimizer` further
    exempts biases, normalisation parameters and the backbone's own exemptions (a ViT's position
    embedding and CLS token) from weight decay and from LARS's trust ratio.

    Args:
        parameters: ``(name, parameter)`` pairs, names as in ``named_parameters()``.
        lr_scale: multiplier of the learning rate.
        fixed_lr: keep the rate constant at its peak value: no warm-up, no decay (SimSiam's
            predictor, Chen & He 2021, Sec. 4.4).
        weight_decay: apply weight decay to this group's weights.
        lars_adaptation: scale this group's LARS updates by the trust ratio.
    """

    parameters: list[tuple[str, nn.Parameter]]
    lr_scale: float = 1.0
    fixed_lr: bool = False
    weight_decay: bool = True
    lars_adaptation: bool = True


def parameter_groups(
    groups: list[ParameterGroup],
    weight_decay: float,
    lr: float,
    exempt: frozenset[str] = frozenset(),
) -> list[dict[str, Any]]:
    """torch's parameter groups for ``groups``: each split into its decayed weights and its
    undecayed parameters (biases and normalisation parameters, every parameter with fewer than
    two dimensions, and the names in ``exempt``), which LARS also leaves unadapted. Frozen
    parameters are left out. Every torch group records ``decayed`` and ``fixed_lr`` for the
    schedules."""
    torch_groups = []
    for group in groups:
        decayed, undecayed = [], []
        for name, param in group.parameters:
            if not param.requires_grad:
                continue
            decays = group.weight_decay and param.ndim > 1 and name not in exempt
            (decayed if decays else undecayed).append(param)
        for params, decays in ((decayed, True), (undecayed, False)):
            if params:
                torch_groups.append(
                    {
                        "params": params,
                        "lr": lr * group.lr_scale,
                        "weight_decay": weight_decay if decays else 0.0,
                        "lars_exclude": not (decays and group.lars_adaptation),
                        "decayed": decays,
                        "fixed_lr": group.fixed_lr,
                    }
                )
    return torch_groups


def build_optimizer(
    groups: list[ParameterGroup] | nn.Module,
    config: OptimizerConfig,
    lr: float,
    exempt: frozenset[str] = frozenset(),
) -> Optimizer:
    """The optimizer named by ``config`` at peak rate ``lr`` over ``groups`` (or over all of a
    module's trainable parameters, as one group)."""
    if isinstance(groups, nn.Module):
        groups = [ParameterGroup(list(groups.named_parameters()))]
    torch_groups = parameter_groups(groups, config.weight_decay, lr, exempt)
    if not torch_groups:
        raise RotauxError("The model has no trainable parameters to optimise.")
    if config.name == "lars":
        return LARS(
            torch_groups,
            lr=lr,
            momentum=config.momentum,
            eta=config.lars_eta,
            clip=config.lars_clip,
        )
    if config.name == "sgd":
        return torch.optim.SGD(torch_groups, lr=lr, momentum=config.momentum)
    return torch.optim.AdamW(torch_groups, lr=lr, betas=(config.momentum, config.adam_beta2))


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """Learning-rate multiplier: linear warm-up to 1 over ``warmup_steps``, then cosine decay to
    ``min_ratio`` at ``total_steps`` (Loshchilov & Hutter 2017; Goyal et al. 2017 warm-up)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(total_steps - warmup_steps, 1)
    progress = min((step - warmup_steps) / decay_steps, 1.0)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def warmup_cosine_scheduler(
    optimizer: Optimizer, warmup_steps: int, total_steps: int, min_ratio: float
) -> LambdaLR:
    """A per-step :class:`LambdaLR` applying :func:`warmup_cosine` to every parameter group
    except those marked ``fixed_lr``, which keep their rate. Its state is the step count, so it
    resumes exactly from a checkpoint."""

    def schedule(step: int) -> float:
        return warmup_cosine(step, warmup_steps, total_steps, min_ratio)

    def constant(step: int) -> float:
        return 1.0

    return LambdaLR(
        optimizer,
        [constant if group.get("fixed_lr") else schedule for group in optimizer.param_groups],
    )


def cosine_between(step: int, total_steps: int, start: float, end: float) -> float:
    """``start`` at step 0 moving to ``end`` at ``total_steps`` along a half cosine (DINO's
    weight-decay schedule, Caron et al. 2021, Appendix)."""
    progress = min(step / max(total_steps, 1), 1.0)
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * progress))


def set_weight_decay(optimizer: Optimizer, config: OptimizerConfig, step: int, total: int) -> None:
    """Set the weight decay of the decayed groups for ``step`` when ``config`` has a
    ``final_weight_decay`` (a function of the step only, so exact after a resume)."""
    if config.final_weight_decay is None:
        return
    value = cosine_between(step, total, config.weight_decay, config.final_weight_decay)
    for group in optimizer.param_groups:
        if group.get("decayed"):
            group["weight_decay"] = value


# Checkpoints keep the model's hyperparameters; torch.load(weights_only=True), the default since
# torch 2.6, accepts only allow-listed classes.
torch.serialization.add_safe_globals([OptimizerConfig])
