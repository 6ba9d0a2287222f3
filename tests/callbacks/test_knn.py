import math

import pytest
import torch
import torch.nn.functional as F
from cli_utils import read_metrics
from ddp import run_distributed
from lightning import LightningModule, Trainer
from torch import nn
from torch.utils.data import Dataset

from rotaux.callbacks.knn import KNNMonitor, knn_class_scores
from rotaux.data import SSLDataModule, Synthetic, SyntheticImages
from rotaux.data.transforms import eval_transform
from rotaux.errors import RotauxError
from rotaux.eval.features import extract_features
from rotaux.loggers import RotauxLogger


def test_weighted_votes_by_hand():
    # cosine similarities of the query to the 4 bank entries: 1, 0, 0.6, -1 (lengths vary)
    bank = torch.tensor([[3.0, 0.0], [0.0, 0.5], [1.2, 1.6], [-2.0, 0.0]])
    labels = torch.tensor([0, 1, 1, 0])
    query = torch.tensor([[2.0, 0.0]])

    def scores(k: int, temperature: float) -> torch.Tensor:
        return knn_class_scores(query, bank, labels, num_classes=2, k=k, temperature=temperature)

    # votes exp((s - s_max) / T): the nearest neighbour weighs 1
    torch.testing.assert_close(scores(3, 0.1), torch.tensor([[1.0, math.exp(-4) + math.exp(-10)]]))
    # a high temperature flattens the weights: two class-1 neighbours outvote one class-0
    torch.testing.assert_close(
        scores(3, 10.0), torch.tensor([[1.0, math.exp(-0.04) + math.exp(-0.1)]])
    )
    assert scores(3, 10.0).argmax().item() == 1
    assert scores(1, 10.0).argmax().item() == 0
    # k larger than the bank uses the whole bank: the opposite entry adds exp(-2 / T)
    torch.testing.assert_close(
        scores(200, 0.1), torch.tensor([[1.0 + math.exp(-20), math.exp(-4) + math.exp(-10)]])
    )


def test_clustered_features_give_the_expected_accuracy():
    generator = torch.Generator().manual_seed(0)
    centres = 5 * torch.eye(3, 8)
    bank_labels = torch.arange(3).repeat_interleave(20)
    bank = centres[bank_labels] + 0.1 * torch.randn(60, 8, generator=generator)
    # 9 queries near their own class centre, 3 labelled with a class whose centre they are not near
    query_labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 0, 1, 2])
    near = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 1, 2, 0])
    queries = centres[near] + 0.1 * torch.randn(12, 8, generator=generator)
    predictions = knn_class_scores(queries, bank, bank_labels, num_classes=3).argmax(dim=1)
    assert predictions.tolist() == near.tolist()
    assert (predictions == query_labels).float().mean().item() == 0.75


def test_chunked_scores_equal_unchunked():
    generator = torch.Generator().manual_seed(1)
    queries = torch.randn(37, 6, generator=generator)
    bank = torch.randn(53, 6, generator=generator)
    labels = torch.randint(0, 5, (53,), generator=generator)
    whole = knn_class_scores(queries, bank, labels, 5, k=10, chunk_size=1000)
    chunked = knn_class_scores(queries, bank, labels, 5, k=10, chunk_size=4)
    torch.testing.assert_close(chunked, whole)
    # and the unchunked result is the textbook formula on the full similarity matrix
    similarities = F.normalize(queries, dim=1) @ F.normalize(bank, dim=1).T
    top, indices = similarities.topk(10, dim=1)
    expected = torch.zeros(37, 5).scatter_add_(1, labels[indices], (top / 0.1).exp())
    torch.testing.assert_close(
        whole / whole.sum(1, keepdim=True), expected / expected.sum(1, keepdim=True)
    )
    assert knn_class_scores(queries[:0], bank, labels, 5).shape == (0, 5)


class _Labelled(Dataset):
    def __init__(self, targets: list[int]) -> None:
        self.targets = targets

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> dict:
        return {
            "image": torch.full((3, 2, 2), index, dtype=torch.uint8),
            "label": self.targets[index],
        }


def test_bank_skips_unlabelled_images_and_subsamples_reproducibly():
    dataset = _Labelled([0, -1, 1, -1, 2, 0, 1, 2, 0, 1])
    assert KNNMonitor()._bank_dataset(dataset).indices == [0, 2, 4, 5, 6, 7, 8, 9]
    subset = KNNMonitor(max_bank_size=4, seed=3)._bank_dataset(dataset).indices
    assert len(subset) == 4 and subset == sorted(subset)
    assert set(subset) <= {0, 2, 4, 5, 6, 7, 8, 9}
    assert KNNMonitor(max_bank_size=4, seed=3)._bank_dataset(dataset).indices == subset


def _shard_features(rank: int, world_size: int) -> tuple:
    return extract_features(
        lambda images: images.flatten(1)[:, :2] * 2,
        _Labelled([0, 1, 2, 0, 1, 2, 0]),
        lambda images: images.float(),
        feature_dim=2,
        device=torch.device("cpu"),
        batch_size=2,
    )


def test_features_are_gathered_in_order_without_sampler_duplicates():
    single = _shard_features(0, 1)
    torch.testing.assert_close(single[0], 2 * torch.arange(7.0).unsqueeze(1).expand(7, 2))
    for features, labels in run_distributed(_shard_features):
        torch.testing.assert_close(features, single[0])
        assert labels.tolist() == [0, 1, 2, 0, 1, 2, 0]


class _FixedEncoder(LightningModule):
    """A seeded random encoder that training leaves unchanged. Its BatchNorm has running
    statistics far from the batch statistics, so train-mode features differ from eval-mode."""

    num_features = 8

    def __init__(self) -> None:
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(0)
            self.backbone = nn.Sequential(
                nn.Conv2d(3, 8, 3, stride=2),
                nn.BatchNorm2d(8),
                nn.ReLU(),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
            )
            self.backbone[1].running_mean.uniform_(-1, 1)
            self.backbone[1].running_var.uniform_(0.2, 3)
        self.unused = nn.Parameter(torch.zeros(()))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self.unused**2

    def validation_step(self, batch: dict, batch_idx: int) -> dict:
        return {"features": self(batch["image"])}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD([self.unused], lr=0.0)


def _naive_knn_accuracy(bank, bank_labels, queries, labels, k: int, temperature: float) -> float:
    correct = 0
    for query, label in zip(queries, labels, strict=True):
        similarities = F.cosine_similarity(query.unsqueeze(0), bank).tolist()
        nearest = sorted(range(len(bank)), key=lambda i: -similarities[i])[:k]
        votes: dict[int, float] = {}
        for i in nearest:
            votes[int(bank_labels[i])] = votes.get(int(bank_labels[i]), 0.0) + math.exp(
                similarities[i] / temperature
            )
        correct += max(votes, key=votes.get) == int(label)
    return correct / len(labels)


def test_monitor_uses_eval_mode_features_of_unaugmented_training_images(tmp_path):
    data = SSLDataModule(
        Synthetic(size=64, classes=4, val_fraction=0.25),
        batch_size=16,
        num_workers=0,
    )
    model = _FixedEncoder()
    trainer = Trainer(
        accelerator="cpu",
        max_epochs=2,
        limit_train_batches=1,
        num_sanity_val_steps=0,
        logger=RotauxLogger(save_dir=str(tmp_path), name="knn"),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[KNNMonitor(k=5, every_n_epochs=2, chunk_size=7)],
    )
    trainer.fit(model, datamodule=data)

    logged = [row for row in read_metrics(tmp_path / "knn" / "version_0") if "val/knn_top1" in row]
    assert [row["epoch"] for row in logged] == [1]

    transform = eval_transform(32, 32)
    model.eval()

    def encode(images: SyntheticImages) -> torch.Tensor:
        batch = torch.stack([transform(image) for image, _ in images])
        with torch.no_grad():
            return model(data.normalize(batch))

    train, val = SyntheticImages(64, 4, 32, seed=0), SyntheticImages(16, 4, 32, seed=1)
    expected = _naive_knn_accuracy(
        encode(train), train.targets, encode(val), val.targets, k=5, temperature=0.1
    )
    assert logged[0]["val/knn_top1"] == pytest.approx(expected)


def test_rejects_invalid_options():
    with pytest.raises(RotauxError, match="temperature"):
        KNNMonitor(temperature=0.0)
    with pytest.raises(RotauxError, match="every_n_epochs"):
        KNNMonitor(every_n_epochs=0)
