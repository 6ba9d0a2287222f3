import importlib.util

import numpy as np
import pytest
import torch
from cli_utils import fit_tiny
from ddp import run_distributed
from lightning import LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn
from torch.utils.data import DataLoader, Dataset

from rotaux.callbacks.embedding_plot import EmbeddingPlot, gather_rows, umap_projection
from rotaux.errors import RotauxError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def clustered(count: int, classes: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` points per class around orthogonal centres at distance ~7, noise 0.3."""
    generator = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), count)
    centres = 5 * np.eye(classes, dim)
    points = centres[labels] + 0.3 * generator.standard_normal((len(labels), dim))
    return points.astype(np.float32), labels


def neighbour_accuracy(points: np.ndarray, labels: np.ndarray, k: int = 5) -> float:
    """Leave-one-out k-nearest-neighbour accuracy in the 2-D picture."""
    distances = ((points[:, None] - points[None]) ** 2).sum(-1)
    np.fill_diagonal(distances, np.inf)
    neighbours = np.argsort(distances, axis=1)[:, :k]
    votes = np.apply_along_axis(np.bincount, 1, labels[neighbours], minlength=labels.max() + 1)
    return float((votes.argmax(1) == labels).mean())


def test_umap_keeps_healthy_classes_apart_and_collapsed_ones_mixed():
    points, labels = clustered(40, 3, 32, seed=0)
    healthy = umap_projection(points, seed=0)
    assert healthy.shape == (120, 2) and np.isfinite(healthy).all()
    assert neighbour_accuracy(healthy, labels) == 1.0
    # every image embedded alike: the picture cannot tell the classes apart
    collapsed = umap_projection(np.ones_like(points), seed=0)
    assert neighbour_accuracy(collapsed, labels) < 0.6
    # the seed fixes the layout
    np.testing.assert_array_equal(umap_projection(points, seed=0), healthy)


def _rows_of_rank(rank: int, world_size: int) -> torch.Tensor:
    rows = torch.arange(3 if rank == 0 else 5).float()[:, None] + 10 * rank
    return gather_rows(rows.repeat(1, 2))


def test_gather_rows_of_different_counts():
    expected = torch.tensor([0.0, 1, 2, 10, 11, 12, 13, 14])[:, None].repeat(1, 2)
    for gathered in run_distributed(_rows_of_rank):
        torch.testing.assert_close(gathered, expected)


class _Images(Dataset):
    def __init__(self, size: int) -> None:
        self.labels = torch.arange(size) % 3

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        return {"image": torch.zeros(1), "label": self.labels[index]}


class _ClusteredFeatures(LightningModule):
    """Trains nothing; validation features are clustered by label."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return (self.weight * batch["image"].sum()).square()

    def validation_step(self, batch: dict, batch_idx: int) -> dict:
        generator = torch.Generator().manual_seed(batch_idx)
        labels = batch["label"]
        noise = 0.3 * torch.randn(len(labels), 16, generator=generator)
        return {"features": 5 * torch.eye(3, 16)[labels] + noise}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_pictures_every_n_epochs_and_at_the_end_in_files_and_tensorboard(tmp_path):
    plot = EmbeddingPlot(enabled=True, every_n_epochs=2, max_samples=60)
    logger = TensorBoardLogger(tmp_path, name="plot", version=0)
    trainer = Trainer(
        max_epochs=3,
        accelerator="cpu",
        callbacks=[plot],
        logger=logger,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    loader = DataLoader(_Images(150), batch_size=25)
    trainer.fit(_ClusteredFeatures(), loader, loader)

    folder = tmp_path / "plot" / "version_0" / "embeddings"
    assert [path for path, _ in plot.written] == [
        folder / "umap-backbone-epoch0002.png",
        folder / "umap-backbone-epoch0003.png",
    ]
    for path, count in plot.written:
        assert path.read_bytes()[:8] == PNG_MAGIC
        # a seeded 40% subset of the 150 images, capped at 60
        assert 35 <= count <= 60
    # the same images every epoch
    assert plot.written[0][1] == plot.written[1][1]
    events = EventAccumulator(str(tmp_path / "plot" / "version_0")).Reload()
    images = events.Images("val/umap_backbone")
    assert len(images) == 2 and images[0].width == 600 and images[0].height == 600


def test_missing_packages_are_named_before_training(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "umap" else real(name, *a)
    )
    with pytest.raises(RotauxError, match=r"needs umap: pip install 'rotaux\[plots\]'"):
        EmbeddingPlot(enabled=True).setup(None, None, "fit")
    EmbeddingPlot().setup(None, None, "fit")  # off: nothing to check


def test_cli_draws_the_projector_picture(tmp_path):
    run = fit_tiny(
        tmp_path,
        "BYOL",
        "--model.proj_output_dim", "32",
        "--model.proj_hidden_dim", "64",
        "--embedding_plot.enabled", "true",
        "--embedding_plot.embedding", "projector",
        "--trainer.limit_val_batches", "2",
    )  # fmt: skip
    pictures = sorted((run / "embeddings").glob("*.png"))
    assert [path.name for path in pictures] == ["umap-projector-epoch0001.png"]
