import pytest
import torch
from ddp import run_distributed
from torch import nn

from rotaux.queue import FeatureQueue


def _rows(*values: float) -> torch.Tensor:
    """One 2-wide row per value: [[v, -v], ...]."""
    column = torch.tensor(values, dtype=torch.float32).unsqueeze(1)
    return torch.cat([column, -column], dim=1)


def test_push_fills_in_order_and_wraps_around_over_the_oldest_rows():
    queue = FeatureQueue(5, 2, init="zeros")
    queue.push(_rows(1, 2, 3))
    # staged: the buffers change only when the step is committed
    assert not queue.rows.any() and int(queue.pointer) == 0 and int(queue.filled) == 0
    queue.commit()
    torch.testing.assert_close(queue.rows, _rows(1, 2, 3, 0, 0))
    assert int(queue.pointer) == 3 and int(queue.filled) == 3
    assert not queue.is_full()
    queue.push(_rows(4, 5, 6))
    queue.commit()
    # 4 and 5 fill the free slots, 6 replaces the oldest row (1)
    torch.testing.assert_close(queue.rows, _rows(6, 2, 3, 4, 5))
    assert int(queue.pointer) == 1 and int(queue.filled) == 5
    assert queue.is_full()
    # read from the pointer on, the rows are in arrival order
    torch.testing.assert_close(torch.roll(queue.rows, -int(queue.pointer), 0), _rows(2, 3, 4, 5, 6))


def test_push_of_more_rows_than_the_queue_holds_keeps_the_newest():
    queue = FeatureQueue(3, 2, init="zeros")
    queue.push(_rows(1))
    queue.push(_rows(2, 3, 4, 5, 6))
    queue.commit()  # two pushes of one step apply in order
    assert int(queue.pointer) == 0
    torch.testing.assert_close(torch.roll(queue.rows, -int(queue.pointer), 0), _rows(4, 5, 6))


def test_random_init_is_unit_rows_and_zeros_init_is_empty():
    torch.testing.assert_close(FeatureQueue(7, 3).rows.norm(dim=1), torch.ones(7))
    assert not FeatureQueue(7, 3).is_full() and not FeatureQueue(7, 3, init="zeros").rows.any()
    with pytest.raises(ValueError, match="at least one row"):
        FeatureQueue(0, 3)


def test_state_dict_round_trip_restores_rows_pointer_and_fill():
    owner = nn.Module()
    owner.queue = FeatureQueue(4, 2, init="zeros")
    owner.queue.push(_rows(1, 2, 3))
    owner.queue.commit()
    state = owner.state_dict()
    assert {"queue.rows", "queue.pointer", "queue.filled"} <= set(state)

    restored = nn.Module()
    restored.queue = FeatureQueue(4, 2, init="zeros")
    restored.queue.push(_rows(9, 9, 9, 9))
    restored.queue.commit()
    assert restored.queue.is_full()
    restored.load_state_dict(state)
    assert not restored.queue.is_full()  # the cached answer belongs to the old contents
    for queue in (owner.queue, restored.queue):
        queue.push(_rows(4, 5))
        queue.commit()
    torch.testing.assert_close(restored.queue.rows, _rows(5, 2, 3, 4))
    torch.testing.assert_close(restored.queue.rows, owner.queue.rows)
    assert int(restored.queue.pointer) == int(owner.queue.pointer) == 1


def _push_from_ranks(rank: int, world_size: int, steps: list[torch.Tensor]) -> tuple:
    queue = FeatureQueue(6, 2, init="zeros")
    for global_batch in steps:
        queue.push(global_batch.chunk(world_size)[rank])
        queue.commit()
    return queue.rows, int(queue.pointer)


def test_push_from_two_ranks_fills_identical_queues_in_rank_order():
    steps = [_rows(1, 2, 3, 4), _rows(5, 6, 7, 8)]
    results = run_distributed(_push_from_ranks, steps)
    single = FeatureQueue(6, 2, init="zeros")
    for global_batch in steps:
        single.push(global_batch)
        single.commit()
    # the second step's rows 5, 6 land after 1-4, then 7, 8 replace 1, 2
    torch.testing.assert_close(single.rows, _rows(7, 8, 3, 4, 5, 6))
    for rows, pointer in results:
        torch.testing.assert_close(rows, single.rows)
        assert pointer == int(single.pointer) == 2


def test_discard_drops_the_staged_rows_and_leaves_the_queue_as_it_was():
    queue = FeatureQueue(4, 2, init="zeros")
    queue.push(_rows(1, 2))
    queue.commit()
    before = {key: value.clone() for key, value in queue.state_dict().items()}
    queue.push(_rows(float("nan"), 3))
    assert queue.has_staged_updates
    queue.discard()
    queue.commit()
    assert not queue.has_staged_updates
    for key, value in queue.state_dict().items():
        assert torch.equal(value, before[key]), key
