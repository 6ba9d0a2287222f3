"""A training data order that a resumed run repeats exactly.

Each epoch's shuffle is seeded by ``(seed, epoch)`` and each sample's augmentations by
``(seed, epoch, index)``, so what a training step sees depends on nothing else: not on how many
loader workers there are, which worker makes a sample, the random state that persistent workers
carry from one epoch to the next, or where in the run the process started. A run resumed from a
checkpoint (at an epoch end, or mid-epoch at a batch boundary) therefore gets the same batches as
one that never stopped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

_MASK = 2**64 - 1


def mix_seed(*values: int) -> int:
    """A 64-bit seed hashed from ``values`` with SplitMix64 (Steele et al., OOPSLA 2014), so
    neighbouring tuples such as ``(seed, epoch, 7)`` and ``(seed, epoch, 8)`` give unrelated
    random streams."""
    state = 0
    for value in values:
        state = (state + (value & _MASK) + 0x9E3779B97F4A7C15) & _MASK
        mixed = ((state ^ (state >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        mixed = ((mixed ^ (mixed >> 27)) * 0x94D049BB133111EB) & _MASK
        state = mixed ^ (mixed >> 31)
    return state


class EpochSampler(DistributedSampler):
    """Shuffles the training set with a permutation seeded by ``(seed, epoch)`` and gives each rank
    its shard, padded like :class:`~torch.utils.data.DistributedSampler` (which it is, so Lightning
    keeps it under DDP instead of injecting its own; ``Trainer(use_distributed_sampler=...)`` has no
    effect on it). Lightning calls :meth:`set_epoch` before each training epoch.

    It yields ``(epoch, index)`` keys for :class:`SeededSamples`, starting ``start`` samples into
    the shard (set by :class:`ResumableLoader` when a run resumes mid-epoch).
    """

    def __init__(self, dataset: Dataset, seed: int, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.start = 0

    def __iter__(self) -> Iterator[tuple[int, int]]:
        size = len(self.dataset)
        generator = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch))
        order = torch.randperm(size, generator=generator).tolist()
        padding = self.total_size - size
        order += (order * math.ceil(padding / size))[:padding]
        shard = order[self.rank : self.total_size : self.num_replicas]
        for index in shard[self.start :]:
            yield self.epoch, index


class SeededSamples(Dataset):
    """Wraps a training dataset so each sample is made with the torch CPU random generator seeded
    from ``(seed, epoch, index)`` (the torchvision augmentations draw from it), then restores the
    generator, so the draws of the model (rotations of ``rotation_copies=1``) are untouched when the
    loader runs in the main process.

    Keys are :class:`EpochSampler`'s ``(epoch, index)``; a plain index (a sampler Lightning swaps
    in for ``Trainer(overfit_batches=...)``) counts as epoch 0.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int] | int) -> Any:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        state = torch.get_rng_state()
        torch.default_generator.manual_seed(mix_seed(self.seed, epoch, index))
        try:
            return self.dataset[index]
        finally:
            torch.set_rng_state(state)


class ResumableLoader(DataLoader):
    """A :class:`~torch.utils.data.DataLoader` over an :class:`EpochSampler` that starts an epoch
    after the batches the fit loop has already trained on, so a mid-epoch resume continues with
    the batch the interrupted run would have seen next.

    Lightning asks for an epoch's iterator before it calls ``set_epoch`` and, on resume, before the
    loop knows which batch it continues from; with workers the iterator hands out its first indices
    at once. So the underlying iterator is only made when the first batch is requested.

    Args:
        batches_done: returns how many batches of the current epoch are already trained on.
    """

    def __init__(self, *args: Any, batches_done: Callable[[], int], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batches_done = batches_done

    def __iter__(self) -> Iterator[Any]:
        # Lightning swaps in a SequentialSampler for Trainer(overfit_batches=...)
        if isinstance(self.sampler, EpochSampler):
            self.sampler.start = self.batches_done() * self.batch_size
        yield from super().__iter__()

    def state_dict(self) -> dict[str, int]:
        """Lightning restores loaders that have a state when it resumes mid-epoch (and warns
        about those that have none); this one's position comes from the fit loop's batch progress
        (``batches_done``), so its state is only the epoch."""
        return {"epoch": getattr(self.sampler, "epoch", 0)}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        if isinstance(self.sampler, EpochSampler):
            self.sampler.set_epoch(state_dict["epoch"])
