from pathlib import Path

import pytest
import torch
from lightning import Callback, Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint

from rotaux.backbones import ResNet
from rotaux.data import SSLDataModule, Synthetic
from rotaux.data.sampler import mix_seed
from rotaux.errors import RotauxError
from rotaux.losses.deepclusterv2 import spherical_kmeans
from rotaux.methods.deepclusterv2 import DeepClusterV2

pytestmark = pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")

# 16 images in batches of 8: 2 steps per epoch
DATA = Synthetic(size=16, classes=4, val_fraction=0.5)
PROTOTYPES, SETS, ITERS = 4, 3, 5


def _model(seed: int = 0, **overrides) -> DeepClusterV2:
    torch.manual_seed(seed)
    options = dict(
        backbone=ResNet(width=8, cifar_stem=True),
        proj_hidden_dim=32,
        proj_output_dim=8,
        num_prototypes=PROTOTYPES,
        num_prototype_sets=SETS,
        kmeans_iters=ITERS,
        rotation_hidden_dim=16,
        channels_last=False,
    )
    return DeepClusterV2(**(options | overrides))


class SslLosses(Callback):
    def __init__(self) -> None:
        self.losses: list[tuple[int, float]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(
            (trainer.current_epoch, float(trainer.callback_metrics["train/ssl_loss"]))
        )


def _fit(model, run_dir: Path, max_steps: int, ckpt_path: Path | None = None, callbacks=()):
    seed_everything(0)
    trainer = Trainer(
        accelerator="cpu",
        max_steps=max_steps,
        deterministic=True,
        logger=False,
        default_root_dir=run_dir,
        callbacks=[
            ModelCheckpoint(
                dirpath=run_dir, filename="{step}", every_n_train_steps=1, save_top_k=-1
            ),
            *callbacks,
        ],
        limit_val_batches=0,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, SSLDataModule(DATA, batch_size=8, num_workers=0), ckpt_path=ckpt_path)


def _memory(checkpoint: Path) -> dict[str, torch.Tensor]:
    state = torch.load(checkpoint, weights_only=False)["state_dict"]
    return {
        key[len("memory.") :]: value for key, value in state.items() if key.startswith("memory.")
    }


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    """Three epochs straight, with a checkpoint after every step."""
    run_dir = tmp_path_factory.mktemp("deepclusterv2")
    model, recorder = _model(), SslLosses()
    _fit(model, run_dir, max_steps=6, callbacks=(recorder,))
    return model, recorder.losses, run_dir


def test_first_epoch_fills_the_bank_and_trains_no_clusters(straight_run):
    _, losses, run_dir = straight_run
    assert [loss for epoch, loss in losses if epoch == 0] == [0.0, 0.0]
    assert all(loss > 0 for epoch, loss in losses if epoch > 0)
    after_step_1, after_epoch_0 = _memory(run_dir / "step=1.ckpt"), _memory(run_dir / "step=2.ckpt")
    assert int(after_step_1["filled"].sum()) == 8 and bool(after_epoch_0["filled"].all())
    torch.testing.assert_close(after_epoch_0["embeddings"].norm(dim=-1), torch.ones(2, 16))
    assert (after_epoch_0["assignments"] == -1).all()
    assert int(after_epoch_0["clustered_epoch"]) == -1


def test_kmeans_of_the_bank_at_each_epoch_start_sets_prototypes_and_clusters(straight_run):
    _, _, run_dir = straight_run
    for epoch, (bank_checkpoint, next_checkpoint) in enumerate(
        [("step=2.ckpt", "step=3.ckpt"), ("step=4.ckpt", "step=5.ckpt")], start=1
    ):
        bank, clustered = _memory(run_dir / bank_checkpoint), _memory(run_dir / next_checkpoint)
        assert int(clustered["clustered_epoch"]) == epoch
        for index in range(SETS):
            generator = torch.Generator().manual_seed(mix_seed(int(bank["seed"]), epoch, index))
            # set h clusters large crop h % 2
            centroids, clusters = spherical_kmeans(
                bank["embeddings"][index % 2], PROTOTYPES, ITERS, generator
            )
            torch.testing.assert_close(clustered["centroids"][index], centroids)
            assert torch.equal(clustered["assignments"][index], clusters)
        # the sets start from different rows, so they differ
        assert not torch.equal(clustered["centroids"][0], clustered["centroids"][2])


@pytest.mark.parametrize("step", [2, 3], ids=["epoch_end", "mid_epoch"])
def test_resume_keeps_bank_and_clusters_and_ends_bit_identical(straight_run, tmp_path, step):
    model, _, run_dir = straight_run
    resumed = _model(seed=1)
    _fit(resumed, tmp_path, max_steps=6, ckpt_path=run_dir / f"step={step}.ckpt")
    straight, again = model.state_dict(), resumed.state_dict()
    assert straight.keys() == again.keys()
    for key in straight:
        assert torch.equal(straight[key], again[key]), key


def test_more_prototypes_than_training_images_is_refused_before_training(tmp_path):
    with pytest.raises(RotauxError, match="num_prototypes"):
        _fit(_model(num_prototypes=17), tmp_path, max_steps=1)


def test_a_batch_without_sample_indices_is_refused_once_the_bank_exists():
    model = _model()
    model.memory.allocate(16)
    views = [torch.randn(4, 3, 32, 32) for _ in range(2)]
    with pytest.raises(RotauxError, match="index"):
        model.training_step({"views": views, "label": torch.zeros(4, dtype=torch.long)}, 0)


def test_training_batches_carry_each_samples_dataset_index():
    # device augmentation: the loader hands over each image untouched (32 px, its native size)
    data = SSLDataModule(DATA, batch_size=8, num_workers=0, augment_on="device")
    data.setup("fit")
    raw = next(iter(data.train_dataloader()))
    images = DATA.load().train
    assert len(set(raw["index"].tolist())) == 8
    for image, index in zip(raw["views"][0], raw["index"], strict=True):
        assert torch.equal(image, images[int(index)][0])
