"""The ``views`` rotation protocol (Addepalli et al., ECCV 2022, val-iisc/EffSSL): each large view
of every image is rotated by its own random multiple of 90 degrees, each rotated view goes through
the online backbone in a call of its own, and the loss adds ``rotation_weight`` times the sum of
the per-view cross-entropies."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch
from lightning import Callback, Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint

from rotaux.backbones import ResNet
from rotaux.checkpointing import PreemptionCheckpoint
from rotaux.data import SSLDataModule, Synthetic
from rotaux.data.rotation import rotate_views
from rotaux.methods import BYOL

# the steps run without a Trainer, so their self.log calls have nowhere to go
pytestmark = pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")

VIEWS_PROTOCOL = {"rotation_source": "views", "rotation_copies": 1, "rotation_weight": 0.1}


def _byol(**options) -> BYOL:
    torch.manual_seed(0)
    return BYOL(
        backbone=ResNet(width=8, cifar_stem=True),
        channels_last=False,
        proj_hidden_dim=16,
        proj_output_dim=8,
        pred_hidden_dim=16,
        rotation_hidden_dim=16,
        **(VIEWS_PROTOCOL | options),
    )


def _training_batch(augment_on: str, size: int = 64) -> dict:
    """One training batch of the data module, through ``on_after_batch_transfer``, with the
    rotation input of the views protocol."""
    data = SSLDataModule(
        Synthetic(size=size), batch_size=size, num_workers=0, augment_on=augment_on, seed=3
    )
    # without a Trainer the data module keeps the rotation input it is given
    data.rotation = _byol().rotation_input()
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    return data.on_after_batch_transfer(batch, 0)


@pytest.mark.parametrize("augment_on", ["loader", "device"])
def test_each_view_is_rotated_once_by_the_multiple_of_90_degrees_its_label_names(augment_on):
    batch = _training_batch(augment_on)
    view_1, view_2 = batch["views"]
    size = len(view_1)
    rotated, labels = batch["rotation"], batch["rotation_labels"]
    # one rotated copy of each of the two views of every image, view 1's first
    assert rotated.shape == (2 * size, *view_1.shape[1:])
    assert labels.shape == (2 * size,) and labels.dtype == torch.long
    for group, view in enumerate((view_1, view_2)):
        for i in range(size):
            label = int(labels[group * size + i])
            expected = torch.rot90(view[i], label, dims=(1, 2))
            assert torch.equal(rotated[group * size + i], expected), (group, i, label)
    # every rotation occurs, and the two views of an image draw theirs independently
    assert set(labels.tolist()) == {0, 1, 2, 3}
    assert not torch.equal(labels[:size], labels[size:])


def test_loss_is_the_weight_times_the_sum_of_the_per_view_cross_entropies():
    model = _byol().train()
    views = [torch.randn(6, 3, 16, 16) for _ in range(2)]
    batch = {"views": views, "label": torch.arange(6)}
    batch["rotation"], batch["rotation_labels"] = rotate_views(views, copies=1)
    ssl_loss = torch.tensor(0.25)
    rotation_term = model.total_loss(ssl_loss, batch) - ssl_loss

    # by hand: each rotated view through backbone and head on its own (batch statistics of that
    # view alone), then the cross-entropy from the log-softmax of the head's logits
    labels = batch["rotation_labels"]
    cross_entropies = []
    with torch.no_grad():
        for group in range(2):
            images = batch["rotation"][group * 6 : (group + 1) * 6]
            group_labels = labels[group * 6 : (group + 1) * 6]
            logits = model.rotation_head(model.backbone(images)).double()
            log_probs = logits - logits.exp().sum(dim=1, keepdim=True).log()
            cross_entropies.append(-log_probs[torch.arange(6), group_labels].mean())
        joint = model.rotation_head(model.backbone(batch["rotation"])).double()
    expected = 0.1 * (cross_entropies[0] + cross_entropies[1])
    torch.testing.assert_close(rotation_term.double(), expected, rtol=1e-5, atol=1e-6)
    # neither the mean over all rotated images nor one backbone call over both views
    joint_ce = torch.nn.functional.cross_entropy(joint, labels)
    assert not torch.isclose(rotation_term.double(), 0.1 * joint_ce, rtol=1e-3)
    assert not torch.isclose(rotation_term.double(), 0.2 * joint_ce, rtol=1e-3)


def test_the_target_network_sees_the_views_and_never_their_rotated_copies():
    model = _byol().train()
    views = [torch.randn(4, 3, 16, 16) for _ in range(2)]
    batch = {"views": views, "label": torch.arange(4)}
    batch["rotation"], batch["rotation_labels"] = rotate_views(views, copies=1)
    seen: dict[str, list[torch.Tensor]] = {"online": [], "target": []}
    for name, network in (("online", model.backbone), ("target", model.target_backbone)):
        network.register_forward_hook(
            lambda module, inputs, output, name=name: seen[name].append(inputs[0].detach())
        )
    model.training_step(batch, 0)["loss"].backward()
    rotated = list(batch["rotation"].chunk(2))
    assert len(seen["target"]) == 2
    assert all(torch.equal(a, b) for a, b in zip(seen["target"], views, strict=True))
    # the online backbone: the two views, then each rotated view in a call of its own
    assert len(seen["online"]) == 4
    assert all(torch.equal(a, b) for a, b in zip(seen["online"], views + rotated, strict=True))
    # the labels are not all 0, so the rotated copies differ from the views the target saw
    assert not all(torch.equal(a, b) for a, b in zip(rotated, views, strict=True))
    assert all(p.grad is None for p in model.target_backbone.parameters())


class _SigtermAt(Callback):
    """Sends this process SIGTERM during training batch ``batch`` of epoch ``epoch``."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if (trainer.current_epoch, batch_idx) == (self.epoch, self.batch):
            os.kill(os.getpid(), signal.SIGTERM)


def _fit(
    run_dir: Path, augment_on: str, ckpt_path: Path | None = None, stop: Callback | None = None
) -> tuple[BYOL, Trainer]:
    """BYOL with the views protocol, 2 epochs of 3 steps on 48 synthetic images."""
    seed_everything(0)
    model = _byol()
    data = SSLDataModule(Synthetic(size=48), batch_size=16, num_workers=0, augment_on=augment_on)
    trainer = Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=2,
        deterministic=True,
        logger=False,
        default_root_dir=run_dir,
        callbacks=[
            ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="last"),
            PreemptionCheckpoint(),
            *([stop] if stop else []),
        ],
        limit_val_batches=0,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, data, ckpt_path=ckpt_path, weights_only=False)
    return model, trainer


@pytest.mark.parametrize("augment_on", ["loader", "device"])
def test_a_run_stopped_mid_epoch_resumes_to_the_same_end(tmp_path, augment_on):
    straight, straight_trainer = _fit(tmp_path / "straight", augment_on)
    with pytest.raises(SystemExit):
        _fit(tmp_path / "first", augment_on, stop=_SigtermAt(epoch=1, batch=1))
    checkpoint = tmp_path / "first" / "checkpoints" / "last.ckpt"
    assert torch.load(checkpoint, weights_only=False)["global_step"] == 5
    resumed, resumed_trainer = _fit(tmp_path / "second", augment_on, ckpt_path=checkpoint)
    assert resumed_trainer.global_step == straight_trainer.global_step == 6
    # weights, EMA target, rotation head and BatchNorm statistics, bit for bit: the random
    # rotations of the resumed step and of the augmentations repeat those of the straight run
    expected = straight.state_dict()
    for key, value in resumed.state_dict().items():
        assert torch.equal(value, expected[key]), key
    optimizer = straight_trainer.optimizers[0].state_dict()["state"]
    for index, state in resumed_trainer.optimizers[0].state_dict()["state"].items():
        assert torch.equal(state["momentum_buffer"], optimizer[index]["momentum_buffer"]), index
