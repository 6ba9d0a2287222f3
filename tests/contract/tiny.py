"""Tiny instances of every registered method on every backbone family, for the contract suite."""

from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rotaux.backbones import Backbone, ResNet, ViT
from rotaux.distributed import all_reduce_sum
from rotaux.methods import METHODS
from rotaux.methods.registry import MethodEntry

FAMILIES: dict[str, Backbone] = {
    "resnet": ResNet(width=8, cifar_stem=True),
    "vit": ViT(size="tiny", patch_size=8, image_size=32),
}

# own options shrunk by name, so a new method needs no entry here
_TINY_BY_NAME = {"num_prototypes": 32, "queue_size": 64, "support_set_size": 64}
# what shrinking by name cannot express: W-MSE whitens groups of whitening_size embeddings, which
# needs more embeddings than dimensions; DeepCluster-v2 makes at most as many clusters as there
# are training images (16 in the contract's data); All4One's transformer dropout draws its
# masks per rank, so DDP equals one process only without it
_TINY_BY_METHOD = {
    "all4one": {"transformer_dropout": 0.0},
    "wmse": {"proj_output_dim": 4, "whitening_size": 8},
    "deepclusterv2": {"num_prototypes": 8},
}


def cases() -> list[tuple[MethodEntry, str]]:
    """Every (method, backbone family) pair the method supports."""
    return [
        (entry, family)
        for entry in METHODS.values()
        for family in FAMILIES
        if entry.backbones == "any" or family == "vit"
    ]


def case_id(case: tuple[MethodEntry, str]) -> str:
    entry, family = case
    return f"{entry.name}-{family}"


def own_options(cls: type) -> dict[str, inspect.Parameter]:
    """Parameters of every ``__init__`` in the method's class hierarchy."""
    options: dict[str, inspect.Parameter] = {}
    for klass in reversed(cls.__mro__):
        if "__init__" in vars(klass):
            for name, parameter in inspect.signature(klass.__init__).parameters.items():
                if parameter.kind is parameter.POSITIONAL_OR_KEYWORD and name != "self":
                    options[name] = parameter
    return options


def tiny_options(entry: MethodEntry, family: str, **overrides: Any) -> dict[str, Any]:
    """Constructor arguments that make ``entry``'s method tiny on ``family``."""
    options: dict[str, Any] = {
        "backbone": FAMILIES[family],
        "rotation_hidden_dim": 16,
        "channels_last": False,
    }
    for name in own_options(entry.cls):
        if name.endswith("_dim") and name not in options:
            options[name] = 32
        elif name in _TINY_BY_NAME:
            options[name] = _TINY_BY_NAME[name]
    options.update(_TINY_BY_METHOD.get(entry.name, {}))
    options.update(overrides)
    return options


def build(entry: MethodEntry, family: str, seed: int = 0, **overrides: Any) -> nn.Module:
    torch.manual_seed(seed)
    return entry.cls(**tiny_options(entry, family, **overrides))


class GlobalBatchNorm(nn.Module):
    """Training-mode BatchNorm whose statistics are those of the global batch under
    ``torch.distributed`` (with gradients through them), and plain BatchNorm in one process:
    SyncBatchNorm on CPUs, which torch only provides for GPUs."""

    def __init__(self, norm: nn.modules.batchnorm._BatchNorm) -> None:
        super().__init__()
        self.norm = norm

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        dims = [0, *range(2, inputs.dim())]
        count = torch.tensor(float(inputs.numel() // inputs.shape[1]))
        sums = torch.cat([inputs.sum(dims), (inputs * inputs).sum(dims), count.view(1)])
        sums = all_reduce_sum(sums)
        channels = inputs.shape[1]
        mean = sums[:channels] / sums[-1]
        variance = sums[channels : 2 * channels] / sums[-1] - mean * mean
        shape = [1, channels] + [1] * (inputs.dim() - 2)
        normalised = (inputs - mean.view(shape)) * torch.rsqrt(variance.view(shape) + self.norm.eps)
        if self.norm.affine:
            normalised = normalised * self.norm.weight.view(shape) + self.norm.bias.view(shape)
        return normalised


def use_global_batch_norm(module: nn.Module) -> None:
    """Replace every BatchNorm of ``module`` (in place) by :class:`GlobalBatchNorm`."""
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(module, name, GlobalBatchNorm(child))
        else:
            use_global_batch_norm(child)


def synthetic_batch(
    size: int, num_views: int = 2, seed: int = 0, small_views: int = 0
) -> dict[str, torch.Tensor | list[torch.Tensor]]:
    """A normalised training batch of ``num_views`` 32 px views and ``small_views`` 16 px views,
    with labels, and 4 rotated copies of a separate crop."""
    generator = torch.Generator().manual_seed(seed)
    views = [torch.randn(size, 3, 32, 32, generator=generator) for _ in range(num_views)]
    views += [
        F.avg_pool2d(torch.randn(size, 3, 32, 32, generator=generator), 2)
        for _ in range(small_views)
    ]
    crop = torch.randn(size, 3, 32, 32, generator=generator)
    rotation = torch.cat([torch.rot90(crop, k, dims=(2, 3)) for k in range(4)])
    labels = torch.arange(4).repeat_interleave(size)
    return {
        "views": views,
        "label": torch.arange(size) % 3,
        "rotation": rotation,
        "rotation_labels": labels,
    }


def rank_share(batch: dict, rank: int, world_size: int) -> dict:
    """The part of a global batch that ``rank`` holds under DDP (rotated copies stay ordered by
    rotation within the share)."""
    size = len(batch["label"])
    share = size // world_size
    local = slice(rank * share, (rank + 1) * share)
    rotation = batch["rotation"].view(4, size, *batch["rotation"].shape[1:])[:, local]
    return {
        "views": [view[local] for view in batch["views"]],
        "label": batch["label"][local],
        "rotation": rotation.reshape(-1, *rotation.shape[2:]),
        "rotation_labels": torch.arange(4).repeat_interleave(share),
    }
