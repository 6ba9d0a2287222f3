"""A first-in-first-out queue of embeddings from past steps (MoCo's negatives, NNCLR's support
set, SwAV's assignment queue)."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F

from rotaux.distributed import gather_no_grad
from rotaux.staging import StagedUpdates


class FeatureQueue(StagedUpdates):
    """The ``size`` most recent rows pushed by all ranks, as buffers saved in checkpoints.

    :meth:`push` gathers the rows of every rank (in rank order, as one process holding the global
    batch would see them) and stages them; :meth:`commit` writes them over the oldest slots, so
    every rank holds the same queue. During training the method commits after each optimizer
    step (:mod:`rotaux.staging`), so a step reads the queue of the steps before it, never its own
    rows, and a step that the divergence guard drops leaves the queue as it was. Outside a
    Trainer, call :meth:`commit` after :meth:`push`. ``rows`` is read in slot order;
    ``pointer`` is the slot written next (the oldest row once the queue is full).

    Args:
        size: number of rows kept.
        dim: width of a row.
        init: ``random`` starts from random unit vectors (MoCo, He et al. 2020; NNCLR,
            Dwibedi et al. 2021); ``zeros`` starts empty, see :meth:`is_full` (SwAV).
    """

    rows: torch.Tensor
    pointer: torch.Tensor
    filled: torch.Tensor

    def __init__(self, size: int, dim: int, init: Literal["random", "zeros"] = "random") -> None:
        super().__init__()
        if size < 1:
            raise ValueError(f"A queue needs at least one row, got size={size}.")
        if init == "random":
            rows = F.normalize(torch.randn(size, dim), dim=1)
        else:
            rows = torch.zeros(size, dim)
        self.size = size
        self.register_buffer("rows", rows)
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))
        self._known_full = False

    @torch.no_grad()
    def push(self, values: torch.Tensor) -> None:
        """Gather ``values`` (``(n, dim)`` on each rank) from all ranks and stage them; the
        queue takes them, dropping its oldest rows, at :meth:`commit`."""
        self.stage(gather_no_grad(values.detach().to(self.rows.dtype)))

    @torch.no_grad()
    def apply_staged(self, values: torch.Tensor) -> None:
        """Write gathered ``values`` over the oldest rows. Slots are computed on the device, so
        this never waits for the host; when more rows arrive than the queue holds, only the
        newest ``size`` are kept."""
        count = len(values)
        kept = min(count, self.size)
        offsets = torch.arange(count - kept, count, device=self.rows.device)
        slots = (self.pointer + offsets) % self.size
        self.rows.index_copy_(0, slots, values[count - kept :])
        self.pointer.copy_((self.pointer + count) % self.size)
        self.filled.add_(count).clamp_(max=self.size)

    def is_full(self) -> bool:
        """Whether every slot holds a committed row. Reads the device until the answer is first
        ``True``; a queue never empties, so later calls cost nothing."""
        if not self._known_full:
            self._known_full = bool(self.filled >= self.size)
        return self._known_full

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._known_full = False
        self.discard()
