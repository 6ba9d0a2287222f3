"""UMAP pictures of the validation embeddings, coloured by class, during pretraining."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger

from rotaux.data.sampler import mix_seed
from rotaux.distributed import gather_no_grad, rank
from rotaux.errors import RotauxError

PLOT_PACKAGES = ("umap", "matplotlib")
INSTALL_HINT = "pip install 'rotaux[plots]' (umap-learn and matplotlib)"


def check_plot_packages(what: str) -> None:
    """Raise a :class:`RotauxError` naming the install command unless umap-learn and matplotlib
    can be imported (checked without importing them: umap's import compiles with numba)."""
    missing = [name for name in PLOT_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise RotauxError(f"{what} needs {' and '.join(missing)}: {INSTALL_HINT}.")


def umap_projection(
    embeddings: np.ndarray,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    metric: str = "cosine",
    seed: int | None = 0,
) -> np.ndarray:
    """2-D UMAP (McInnes et al., "UMAP: Uniform Manifold Approximation and Projection", 2018)
    of ``embeddings`` ``(N, d)``. A seed makes the layout reproducible (and umap single-threaded).
    """
    # imported here: numba compiles on import, and only runs that draw should pay for it
    import umap

    n_neighbors = max(2, min(n_neighbors, len(embeddings) - 1))
    reducer = umap.UMAP(
        n_components=2,
        n_neighbors=n_neighbors,
        min_dist=min_dist,
        metric=metric,
        random_state=seed,
        n_jobs=1 if seed is not None else -1,
    )
    return np.asarray(reducer.fit_transform(embeddings), dtype=np.float32)


def draw_embedding_plot(
    points: np.ndarray, labels: np.ndarray, classes: list[str], title: str
) -> Any:
    """A matplotlib figure of 2-D ``points`` coloured by class (grey for unlabelled, label < 0),
    with a legend of the class names when there are at most 20 classes."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 6), dpi=100)
    unlabelled = labels < 0
    if unlabelled.any():
        axis.scatter(*points[unlabelled].T, s=3, c="lightgrey", label="unlabelled")
    colours = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for index, name in enumerate(classes):
        members = labels == index
        if members.any():
            axis.scatter(*points[members].T, s=3, color=colours(index % colours.N), label=name)
    if len(classes) <= 20:
        axis.legend(markerscale=4, fontsize="small", loc="best", frameon=False)
    axis.set(title=title, xticks=[], yticks=[])
    figure.tight_layout()
    return figure


def figure_to_array(figure: Any) -> np.ndarray:
    """The rendered figure as an ``(H, W, 3)`` uint8 array (for TensorBoard)."""
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()


def gather_rows(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` ``(n_r, ...)`` from every DDP rank in rank order, where ``n_r`` may
    differ between ranks (padded to the largest for the collective, then cut)."""
    counts = gather_no_grad(torch.tensor([len(tensor)], device=tensor.device))
    largest = int(counts.max())
    padded = torch.zeros((largest, *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
    padded[: len(tensor)] = tensor
    gathered = gather_no_grad(padded).view(len(counts), largest, *tensor.shape[1:])
    return torch.cat([rows[:count] for rows, count in zip(gathered, counts.tolist(), strict=True)])


class EmbeddingPlot(Callback):
    """A UMAP picture of the validation embeddings coloured by class every ``every_n_epochs``
    epochs and once more when training ends: ``<run>/embeddings/umap-<embedding>-epoch<E>.png``
    (``E`` = epochs trained) and an image ``val/umap_<embedding>`` in TensorBoard.

    The embeddings are those the validation already computes (the pooled backbone features, or
    another entry of the method's :meth:`~rotaux.methods.SSLMethod.validation_embeddings` such
    as ``projector``). Cost is bounded: each validation keeps a seeded random subset of about
    ``max_samples`` images (the same images every epoch, so the pictures compare), gathered from
    every DDP rank; rank 0 runs UMAP on the CPU and draws the picture after the validation loop,
    never inside a training step.

    Off by default: UMAP is an optional dependency (``pip install 'rotaux[plots]'``) whose first
    call in a process compiles with numba (about 20 s on a small CPU) and a picture of 2,000
    points takes seconds more; a picture is for looking at, not a number to track every epoch.
    Parameters are umap-learn's defaults (15 neighbours, ``min_dist`` 0.1) with the cosine
    metric, the similarity the kNN monitor and the contrastive losses use.

    Args:
        enabled: draw the pictures.
        every_n_epochs: draw after every this many training epochs (and at the end).
        max_samples: validation images in a picture (about; a seeded random subset).
        embedding: which validation embedding to draw: ``backbone`` or a name that the method's
            ``validation_embeddings`` returns (``projector``).
        n_neighbors: UMAP's neighbourhood size.
        min_dist: UMAP's minimum distance between embedded points.
        metric: UMAP's input metric.
        seed: seed of the subset and of UMAP's layout.

    ``written`` lists the pictures drawn so far, each with the number of images in it.
    """

    def __init__(
        self,
        enabled: bool = False,
        every_n_epochs: int = 10,
        max_samples: int = 2000,
        embedding: str = "backbone",
        n_neighbors: int = 15,
        min_dist: float = 0.1,
        metric: str = "cosine",
        seed: int = 0,
    ) -> None:
        if every_n_epochs < 1 or max_samples < 3:
            raise RotauxError(
                f"EmbeddingPlot needs every_n_epochs >= 1 and max_samples >= 3, got "
                f"{every_n_epochs} and {max_samples}."
            )
        self.enabled = enabled
        self.every_n_epochs = every_n_epochs
        self.max_samples = max_samples
        self.embedding = embedding
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.metric = metric
        self.seed = seed
        self.written: list[tuple[Path, int]] = []
        self._kept: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._keep_fraction = 1.0
        self._pending: tuple[int, torch.Tensor, torch.Tensor] | None = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.enabled:
            check_plot_packages("--embedding_plot.enabled")

    def _active(self, trainer: Trainer) -> bool:
        return self.enabled and not trainer.sanity_checking

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._kept = []
        loader = trainer.val_dataloaders
        total = len(loader.dataset) if hasattr(loader, "dataset") else self.max_samples
        self._keep_fraction = min(1.0, self.max_samples / max(total, 1))

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not self._active(trainer):
            return
        features = outputs["features"]
        if self.embedding == "backbone":
            embeddings = features
        else:
            with torch.no_grad(), trainer.precision_plugin.forward_context():
                available = pl_module.validation_embeddings(features)
            if self.embedding not in available:
                raise RotauxError(
                    f"--embedding_plot.embedding {self.embedding!r} is not among the validation "
                    f"embeddings of {type(pl_module).__name__}: {sorted(available)}."
                )
            embeddings = available[self.embedding]
        # the same images every epoch: the draw depends on the seed, rank and batch only
        generator = torch.Generator().manual_seed(mix_seed(self.seed, rank(), batch_idx))
        keep = torch.rand(len(embeddings), generator=generator) < self._keep_fraction
        keep = keep.to(embeddings.device)
        self._kept.append((embeddings[keep].detach().float(), batch["label"][keep]))

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._active(trainer) or not self._kept:
            return
        embeddings = gather_rows(torch.cat([e for e, _ in self._kept]))[: self.max_samples]
        labels = gather_rows(torch.cat([label for _, label in self._kept]))[: self.max_samples]
        self._kept = []
        epochs = trainer.current_epoch + 1
        self._pending = (epochs, embeddings.cpu(), labels.cpu())
        if epochs % self.every_n_epochs == 0:
            self._draw(trainer)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.enabled:
            self._draw(trainer)

    def _draw(self, trainer: Trainer) -> None:
        """Picture of the latest validation's embeddings (on rank 0), unless already drawn."""
        if self._pending is None:
            return
        epochs, embeddings, labels = self._pending
        self._pending = None
        if trainer.global_rank != 0 or len(embeddings) < 3:
            return
        points = umap_projection(
            embeddings.numpy(), self.n_neighbors, self.min_dist, self.metric, self.seed
        )
        classes = list(getattr(getattr(trainer, "datamodule", None), "classes", None) or [])
        if not classes:
            classes = [str(index) for index in range(int(labels.max()) + 1)]
        title = (
            f"UMAP of {self.embedding} embeddings after {epochs} epochs\n"
            f"({len(points)} validation images)"
        )
        figure = draw_embedding_plot(points, labels.numpy(), classes, title)
        folder = Path(trainer.log_dir or trainer.default_root_dir) / "embeddings"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"umap-{self.embedding}-epoch{epochs:04d}.png"
        figure.savefig(path)
        self.written.append((path, len(points)))
        image = figure_to_array(figure)
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image(
                    f"val/umap_{self.embedding}", image, trainer.global_step, dataformats="HWC"
                )
        from matplotlib import pyplot as plt

        plt.close(figure)
