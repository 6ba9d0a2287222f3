"""Evaluation while pretraining on unlabeled images: the probe and the kNN monitor use
--data.eval_dataset, or switch off with one warning naming it."""

import contextlib
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from cli_utils import TINY_RUN, fit_tiny, read_metrics
from ddp import run_distributed
from lightning import LightningModule, Trainer
from PIL import Image
from torch import nn

from rotaux.callbacks import KNNMonitor, OnlineLinearProbe
from rotaux.cli import main
from rotaux.data import ImageFolder, SSLDataModule, Synthetic, SyntheticImages, UnlabeledFolder
from rotaux.loggers import RotauxLogger

COLOURS = ((200, 30, 30), (30, 200, 30), (30, 30, 200))


def _noise_folder(root, count=8, side=36):
    rng = np.random.default_rng(0)
    for index in range(count):
        folder = root / f"part{index % 2}" / "deeper"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{index}.png")
    return str(root)


def _coloured_classes(root, per_class=6, val_per_class=3, side=32):
    """An ImageFolder whose class is the dominant colour (plus noise)."""
    rng = np.random.default_rng(1)
    for split, count in (("train", per_class), ("val", val_per_class)):
        for label, colour in enumerate(COLOURS):
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True)
            for index in range(count):
                noise = rng.integers(-25, 26, (side, side, 3))
                pixels = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{index}.png")
    return str(root)


class _ChannelMeans(LightningModule):
    """A fixed encoder: the mean of each channel. Training leaves it unchanged."""

    num_features = 3

    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(()))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.mean(dim=(2, 3))

    def training_step(self, batch: dict, batch_idx: int) -> dict:
        loss = self.unused**2
        self.log("train/loss", loss)
        return {"loss": loss, "features": self(batch["views"][0])}

    def validation_step(self, batch: dict, batch_idx: int) -> dict:
        return {"features": self(batch["image"])}

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(tmp_path, data, callbacks):
    trainer = Trainer(
        accelerator="cpu",
        max_epochs=1,
        num_sanity_val_steps=1,
        log_every_n_steps=1,
        logger=RotauxLogger(save_dir=str(tmp_path), name="eval"),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
    )
    trainer.fit(_ChannelMeans(), datamodule=data)
    return read_metrics(tmp_path / "eval" / "version_0")


def test_probe_and_knn_fit_on_the_eval_dataset_and_validate_on_its_val_split(tmp_path):
    data = SSLDataModule(
        UnlabeledFolder(_noise_folder(tmp_path / "unlabeled")),
        eval_dataset=ImageFolder(_coloured_classes(tmp_path / "labelled")),
        image_size=32,
        batch_size=4,
        num_workers=0,
    )
    probe = OnlineLinearProbe(fit_epochs=50)
    rows = _fit(tmp_path, data, [probe, KNNMonitor(k=3)])
    assert data.evaluation_data == "eval_dataset" and data.num_classes == 3
    (metrics,) = [row for row in rows if "val/linear_top1" in row]
    # the colour means separate the classes; a probe that learned from the unlabeled training
    # batches (which carry no labels) would be at chance
    assert metrics["val/linear_top1"] == 1.0 and metrics["val/knn_top1"] == 1.0
    # the probe standardised with the mean of the eval training images' features, by hand
    means = []
    for path, _ in data.eval_train_dataset().base.samples:
        pixels = np.asarray(Image.open(path), dtype=np.float64) / 255
        means.append((pixels.mean(axis=(0, 1)) - data.mean) / data.std)
    expected = torch.tensor(np.mean(means, axis=0), dtype=torch.float32)
    torch.testing.assert_close(probe.classifier[0].running_mean, expected)


def test_without_labels_the_callbacks_warn_once_and_report_nothing(tmp_path):
    data = SSLDataModule(
        UnlabeledFolder(_noise_folder(tmp_path / "unlabeled"), val_fraction=0.25),
        image_size=32,
        batch_size=2,
        num_workers=0,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = _fit(tmp_path, data, [OnlineLinearProbe(), KNNMonitor(k=3)])
    messages = [str(w.message) for w in caught if "--data.eval_dataset" in str(w.message)]
    assert len(messages) == 2
    assert messages[0].startswith("The online linear probe is switched off")
    assert messages[1].startswith("The kNN monitor is switched off")
    logged = set().union(*rows)
    assert "train/loss" in logged
    assert "val/linear_top1" not in logged and "val/knn_top1" not in logged


def _probe_fitted_on_the_eval_dataset(rank: int, world_size: int) -> dict:
    """The probe's fit on a synthetic evaluation set of 15 training images (so the ranks' shares,
    8 and 7, differ in size), with a stand-in for the trainer."""
    data = SSLDataModule(
        Synthetic(size=8, classes=2),
        eval_dataset=Synthetic(size=15, classes=3, seed=5),
        batch_size=4,
        num_workers=0,
    )
    data.setup("fit")
    trainer = SimpleNamespace(
        datamodule=data,
        world_size=world_size,
        precision_plugin=SimpleNamespace(forward_context=contextlib.nullcontext),
    )
    probe = OnlineLinearProbe(fit_epochs=5)
    probe.setup(trainer, _ChannelMeans(), "fit")
    probe.fit_on_eval_dataset(trainer, _ChannelMeans())
    return probe.classifier.state_dict()


def test_the_probe_fit_is_the_same_on_every_rank_as_in_one_process():
    single = _probe_fitted_on_the_eval_dataset(0, 1)
    # the standardisation uses the features of all 15 evaluation training images, by hand
    images = SyntheticImages(15, 3, 32, seed=5).images.double() / 255
    statistics = torch.tensor(Synthetic().mean).view(1, 3), torch.tensor(Synthetic().std)
    features = (images.mean(dim=(2, 3)) - statistics[0]) / statistics[1]
    torch.testing.assert_close(single["0.running_mean"], features.mean(0).float())
    for ranked in run_distributed(_probe_fitted_on_the_eval_dataset):
        assert ranked.keys() == single.keys()
        for key, value in single.items():
            torch.testing.assert_close(ranked[key], value)


UNLABELED_RUN = [
    "--data.image_size", "32",
    "--data.batch_size", "4",
    "--trainer.limit_val_batches", "2",
    "--trainer.log_every_n_steps", "1",
    "--model.proj_hidden_dim", "16",
    "--model.pred_hidden_dim", "16",
    "--model.rotation_hidden_dim", "16",
]  # fmt: skip


def test_rotaux_fit_with_an_unlabeled_folder_and_an_eval_dataset_logs_the_probe(tmp_path):
    run = fit_tiny(
        tmp_path,
        "BYOL",
        *UNLABELED_RUN,
        "--data.dataset", "UnlabeledFolder",
        "--data.dataset.root", _noise_folder(tmp_path / "unlabeled"),
        "--data.eval_dataset", "ImageFolder",
        "--data.eval_dataset.root", _coloured_classes(tmp_path / "labelled"),
    )  # fmt: skip
    rows = read_metrics(run)
    (top1,) = [row["val/linear_top1"] for row in rows if "val/linear_top1" in row]
    # 8 validation images (2 batches of 4) of the eval set's val split
    assert top1 * 8 == pytest.approx(round(top1 * 8))
    assert list((run / "checkpoints").glob("best-*.ckpt"))


def test_rotaux_fit_on_an_unlabeled_folder_alone_warns_once_and_keeps_last_ckpt(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = fit_tiny(
            tmp_path,
            "BYOL",
            *UNLABELED_RUN,
            "--data.dataset", "UnlabeledFolder",
            "--data.dataset.root", _noise_folder(tmp_path / "unlabeled", count=12),
            "--data.dataset.val_fraction", "0.25",
        )  # fmt: skip
    messages = [str(w.message) for w in caught if "--data.eval_dataset" in str(w.message)]
    assert len(messages) == 1
    assert "online linear probe is switched off" in messages[0]
    assert "no best checkpoint is kept by val/linear_top1" in messages[0]
    rows = read_metrics(run)
    assert not any("val/linear_top1" in row for row in rows)
    assert any("train/loss" in row for row in rows)
    # validation ran (3 held-out images) without stopping the run for the missing metric
    assert (run / "checkpoints" / "last.ckpt").exists()
    assert not list((run / "checkpoints").glob("best-*.ckpt"))


def test_rotaux_validate_fits_the_probe_on_the_eval_dataset_under_inference_mode(tmp_path, capsys):
    # `rotaux validate` runs under torch.inference_mode, whose tensors cannot enter autograd
    unlabeled = _noise_folder(tmp_path / "unlabeled")
    labelled = _coloured_classes(tmp_path / "labelled")
    sources = [
        "--data.dataset", "UnlabeledFolder", "--data.dataset.root", unlabeled,
        "--data.eval_dataset", "ImageFolder", "--data.eval_dataset.root", labelled,
    ]  # fmt: skip
    run = fit_tiny(tmp_path, "BYOL", *UNLABELED_RUN, *sources)
    checkpoint = run / "checkpoints" / "last.ckpt"
    main(
        [
            "validate", "--model", "BYOL", *TINY_RUN, *UNLABELED_RUN, *sources,
            "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path),
            "--ckpt_path", str(checkpoint),
        ]
    )  # fmt: skip
    assert "val/linear_top1" in capsys.readouterr().out
    assert (tmp_path / "config.yaml").exists()


def test_errors_of_the_eval_dataset_name_its_own_options(tmp_path):
    from rotaux.data import FileList
    from rotaux.errors import RotauxError

    data = SSLDataModule(
        Synthetic(size=16), batch_size=4, eval_dataset=FileList(str(tmp_path / "missing.csv"))
    )
    with pytest.raises(RotauxError) as error:
        data.setup("fit")
    message = str(error.value)
    assert message.startswith("In --data.eval_dataset:") and "missing.csv" in message
    assert "--data.dataset." not in message
