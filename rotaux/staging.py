"""State that a training step changes only once the step is known to be good.

Queues of past embeddings and DINO's center are updated in the forward pass, but a step whose
loss or gradients turn out non-finite must not leave a trace in them. Modules that hold such state
derive from :class:`StagedUpdates`: the forward pass computes the update (with any collective
communication it needs, so every rank stays in step) and keeps it aside; the buffers change only
at :meth:`StagedUpdates.commit`. :meth:`SSLMethod.optimizer_step
<rotaux.methods.SSLMethod.optimizer_step>` commits after every optimizer step, and
:class:`~rotaux.callbacks.DivergenceGuard` discards the staged updates of a step it stops or skips,
so it never has to copy these (large) buffers. With gradient accumulation the updates of all the
micro-batches of a step are applied, in order, after that step: the micro-batches read the state
of the start of the step, as the parts of one large batch would. Under fp16 mixed precision
the guard checks only the loss and the gradient scaler skips overflowing steps itself; such a
step's staged updates are still committed (they come from finite features).
"""

from __future__ import annotations

from torch import nn


class StagedUpdates(nn.Module):
    """A module whose buffers change only at :meth:`commit` (see the module docstring).

    Subclasses keep each staged update with :meth:`stage` and apply one in :meth:`apply_staged`.
    """

    def __init__(self) -> None:
        super().__init__()
        self._staged: list = []

    def stage(self, update: object) -> None:
        """Keep ``update`` until the step is committed or discarded."""
        self._staged.append(update)

    @property
    def has_staged_updates(self) -> bool:
        return bool(self._staged)

    def apply_staged(self, update: object) -> None:
        """Write one staged update into the buffers."""
        raise NotImplementedError

    def commit(self) -> None:
        """Apply the staged updates in the order they were staged, then forget them."""
        staged, self._staged = self._staged, []
        for update in staged:
            self.apply_staged(update)

    def discard(self) -> None:
        """Forget the staged updates: the buffers stay as they were before the step."""
        self._staged = []


def commit_staged_updates(module: nn.Module) -> None:
    """:meth:`StagedUpdates.commit` every staged-update module inside ``module``."""
    for child in module.modules():
        if isinstance(child, StagedUpdates):
            child.commit()


def discard_staged_updates(module: nn.Module) -> None:
    """:meth:`StagedUpdates.discard` every staged-update module inside ``module``."""
    for child in module.modules():
        if isinstance(child, StagedUpdates):
            child.discard()


def staged_buffer_ids(module: nn.Module) -> set[int]:
    """``id`` of every buffer that belongs to a staged-update module inside ``module``: buffers
    that no forward pass writes."""
    return {
        id(buffer)
        for child in module.modules()
        if isinstance(child, StagedUpdates)
        for buffer in child.buffers(recurse=False)
    }


def staged_buffer_names(module: nn.Module) -> list[str]:
    """Names (as in ``module.named_buffers()``) of every buffer of a staged-update module inside
    ``module``. They are the same on every rank by construction (each update is computed from
    all ranks' data), so DDP need not broadcast them before every forward pass."""
    return [
        f"{prefix}.{name}" if prefix else name
        for prefix, child in module.named_modules()
        if isinstance(child, StagedUpdates)
        for name in child._buffers
    ]
