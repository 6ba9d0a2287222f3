import torch
from ddp import run_distributed

from rotaux.distributed import own_rows
from rotaux.methods.masking import (
    block_masks,
    masking_ratios,
    random_masks,
    shuffle_keep_indices,
)

CPU = torch.device("cpu")


def _neighbourly_share(masks: torch.Tensor) -> float:
    """Share of masked patches with at least two masked 4-neighbours (high for blocks)."""
    padded = torch.nn.functional.pad(masks.float(), (1, 1, 1, 1))
    neighbours = (
        padded[:, :-2, 1:-1] + padded[:, 2:, 1:-1] + padded[:, 1:-1, :-2] + padded[:, 1:-1, 2:]
    )
    return ((neighbours >= 2) & masks).sum().item() / masks.sum().item()


def test_mae_masking_keeps_exactly_the_asked_share_per_sample_uniformly():
    torch.manual_seed(0)
    kept, mask = shuffle_keep_indices(2000, 16, 4, CPU)
    assert kept.shape == (2000, 4) and (kept.diff(dim=1) > 0).all()
    assert (mask.sum(dim=1) == 12).all()
    assert not mask.gather(1, kept).any()
    frequency = (~mask).float().mean(dim=0)
    assert ((frequency - 0.25).abs() < 0.04).all()


def test_random_masks_mask_exactly_floor_of_the_ratio():
    torch.manual_seed(0)
    masks = random_masks(torch.tensor([0.0, 0.1, 0.3, 0.5]), (4, 5))
    assert masks.sum(dim=(1, 2)).tolist() == [0, 2, 6, 10]


def test_block_masks_reach_their_target_in_blocks_and_never_exceed_it():
    torch.manual_seed(0)
    ratios = torch.full((200,), 0.4)
    masks = block_masks(ratios, (14, 14))
    counts = masks.sum(dim=(1, 2)).float()
    assert (counts <= 0.4 * 196).all()
    assert counts.mean() > 0.85 * 0.4 * 196
    random = random_masks(ratios, (14, 14))
    assert _neighbourly_share(masks) > 0.8 > 0.5 > _neighbourly_share(random)
    assert not block_masks(torch.zeros(5), (14, 14)).any()


def test_ratios_are_zero_or_in_range_with_the_given_probability():
    torch.manual_seed(0)
    ratios = masking_ratios(4000, (0.1, 0.5), 0.5, CPU)
    masked = ratios[ratios > 0]
    assert abs(len(masked) / 4000 - 0.5) < 0.03
    assert masked.min() >= 0.1 and masked.max() <= 0.5
    assert abs(masked.mean().item() - 0.3) < 0.01


def _draw_on_rank(rank: int, world_size: int) -> tuple:
    torch.manual_seed(0)
    kept, mask = shuffle_keep_indices(3, 16, 4, CPU)
    ratios = masking_ratios(3, (0.1, 0.5), 0.5, CPU)
    blocks = own_rows(block_masks(ratios, (4, 4)), 3)
    return kept, mask, blocks


def test_each_rank_draws_its_rows_of_the_masks_of_one_process_with_the_global_batch():
    ranks = run_distributed(_draw_on_rank)
    torch.manual_seed(0)
    kept, mask = shuffle_keep_indices(6, 16, 4, CPU)
    blocks = block_masks(masking_ratios(6, (0.1, 0.5), 0.5, CPU), (4, 4))
    torch.testing.assert_close(torch.cat([r[0] for r in ranks]), kept)
    torch.testing.assert_close(torch.cat([r[1] for r in ranks]), mask)
    torch.testing.assert_close(torch.cat([r[2] for r in ranks]), blocks)
    assert not torch.equal(ranks[0][1], ranks[1][1])
