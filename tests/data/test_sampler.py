from collections import Counter

import torch

from rotaux.data import SSLDataModule, Synthetic
from rotaux.data.sampler import EpochSampler, ResumableLoader, SeededSamples


class Noise(torch.utils.data.Dataset):
    """Index plus a draw from the global torch generator, as a random augmentation makes one."""

    def __len__(self) -> int:
        return 10

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"index": torch.tensor(index), "noise": torch.rand(3)}


def epoch_order(sampler: EpochSampler, epoch: int) -> list[int]:
    sampler.set_epoch(epoch)
    keys = list(sampler)
    assert {key_epoch for key_epoch, _ in keys} == {epoch}
    return [index for _, index in keys]


def test_each_epoch_is_a_permutation_fixed_by_seed_and_epoch():
    sampler = EpochSampler(Noise(), seed=3)
    first, second = epoch_order(sampler, 0), epoch_order(sampler, 1)
    assert sorted(first) == sorted(second) == list(range(10))
    assert first != second
    assert epoch_order(EpochSampler(Noise(), seed=3), 1) == second
    assert epoch_order(EpochSampler(Noise(), seed=4), 1) != second


def test_ranks_get_disjoint_shards_padded_to_equal_length():
    shards = [epoch_order(EpochSampler(Noise(), 0, num_replicas=3, rank=r), 2) for r in range(3)]
    assert [len(shard) for shard in shards] == [4, 4, 4]
    counts = Counter(index for shard in shards for index in shard)
    # 12 slots for 10 images: each image once, two repeated as padding (as DistributedSampler)
    assert set(counts) == set(range(10)) and sorted(counts.values()) == [1] * 8 + [2] * 2


def test_sample_randomness_depends_only_on_seed_epoch_and_index():
    samples = SeededSamples(Noise(), seed=0)
    torch.manual_seed(5)
    before = torch.get_rng_state()
    first = samples[(0, 7)]["noise"]
    # the global generator the model draws from is left as it was
    assert torch.equal(torch.get_rng_state(), before)
    torch.rand(100)
    assert torch.equal(samples[(0, 7)]["noise"], first)
    assert not torch.equal(samples[(1, 7)]["noise"], first)
    assert not torch.equal(samples[(0, 6)]["noise"], first)
    assert not torch.equal(SeededSamples(Noise(), seed=1)[(0, 7)]["noise"], first)


def loader(num_workers: int, batches_done: int = 0) -> ResumableLoader:
    return ResumableLoader(
        SeededSamples(Noise(), seed=0),
        sampler=EpochSampler(Noise(), seed=0),
        batch_size=2,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        batches_done=lambda: batches_done,
    )


def test_batches_are_the_same_with_any_workers_and_resume_mid_epoch():
    main_process, two_workers = loader(0), loader(2)
    for epoch in (0, 1):
        main_process.sampler.set_epoch(epoch)
        two_workers.sampler.set_epoch(epoch)
        expected = list(main_process)
        assert len(expected) == 5
        for batch, reference in zip(two_workers, expected, strict=True):
            assert torch.equal(batch["index"], reference["index"])
            assert torch.equal(batch["noise"], reference["noise"])
    resumed = loader(0, batches_done=3)
    resumed.sampler.set_epoch(1)
    assert [b["index"].tolist() for b in resumed] == [b["index"].tolist() for b in expected[3:]]


def test_data_module_takes_the_run_seed_and_restores_the_checkpointed_one(monkeypatch):
    monkeypatch.setenv("PL_GLOBAL_SEED", "11")
    data = SSLDataModule(Synthetic(size=16), batch_size=4, num_workers=0)
    data.setup("fit")
    assert data.train_dataloader().sampler.seed == 11
    assert data.state_dict() == {"seed": 11}
    resumed = SSLDataModule(Synthetic(size=16), batch_size=4, num_workers=0)
    resumed.load_state_dict({"seed": 5})
    resumed.setup("fit")
    loader = resumed.train_dataloader()
    assert loader.sampler.seed == loader.dataset.seed == 5
