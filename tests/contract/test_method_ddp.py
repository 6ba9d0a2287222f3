"""Under 2-process gloo DDP, every registered method's training step gives the loss and the
(DDP-averaged) gradients of one process holding the whole batch: everything that mixes samples
(negatives, cross-correlations, Sinkhorn, centers, queues) is computed over the global batch."""

from __future__ import annotations

import pytest
from ddp import run_distributed
from tiny import FAMILIES, build, rank_share, synthetic_batch, use_global_batch_norm

from rotaux.methods import METHODS

pytestmark = pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")

GLOBAL_BATCH = 8


def _methods(family: str) -> list[str]:
    return [name for name, entry in METHODS.items() if entry.backbones == "any" or family == "vit"]


def _step(name: str, family: str, rank: int, world_size: int) -> tuple[float, dict]:
    """Loss and gradients of one training step of ``name`` on this rank's share of the batch.
    BatchNorm uses global-batch statistics, as SyncBatchNorm does on GPUs."""
    entry = METHODS[name]
    model = build(entry, family)
    use_global_batch_norm(model)
    model.train()
    batch = synthetic_batch(GLOBAL_BATCH, num_views=model.num_global_views)
    if world_size > 1:
        batch = rank_share(batch, rank, world_size)
    loss = model.training_step(batch, 0)["loss"]
    loss.backward()
    grads = {
        key: param.grad.detach().clone()
        for key, param in model.named_parameters()
        if param.grad is not None
    }
    return loss.item(), grads


def _all_methods(rank: int, world_size: int, family: str) -> dict:
    return {name: _step(name, family, rank, world_size) for name in _methods(family)}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_ddp_step_equals_one_process_with_the_whole_batch(family):
    ranks = run_distributed(_all_methods, family)
    for name in _methods(family):
        loss, grads = _step(name, family, rank=0, world_size=1)
        # DDP averages the ranks' gradients; each rank's loss is the mean over its share
        ddp_loss = sum(result[name][0] for result in ranks) / len(ranks)
        assert ddp_loss == pytest.approx(loss, rel=1e-4, abs=1e-6), name
        assert set(ranks[0][name][1]) == set(grads), name
        scale = max(grad.abs().max().item() for grad in grads.values())
        for key, grad in grads.items():
            ddp_grad = sum(result[name][1][key] for result in ranks) / len(ranks)
            # float32 sums in another order: compare at the scale of the gradients
            error = (ddp_grad - grad).abs().max().item()
            assert error <= 1e-4 * grad.abs().max().item() + 1e-6 * scale, (name, key, error)
