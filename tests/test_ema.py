import copy

import pytest
import torch
from lightning import Callback, Trainer
from torch import nn

from rotaux.backbones import ResNet
from rotaux.data import SSLDataModule, Synthetic
from rotaux.ema import cosine_momentum, ema_update_
from rotaux.methods import BYOL
from rotaux.optim import OptimizerConfig


def test_cosine_momentum_rises_from_base_to_final():
    assert cosine_momentum(0, 100, 0.99, 1.0) == pytest.approx(0.99)
    assert cosine_momentum(50, 100, 0.99, 1.0) == pytest.approx(0.995)
    assert cosine_momentum(100, 100, 0.99, 1.0) == pytest.approx(1.0)
    assert cosine_momentum(25, 100, 0.99, 1.0) == pytest.approx(1.0 - 0.01 * (2**-0.5 + 1) / 2)
    assert cosine_momentum(250, 100, 0.99, 1.0) == pytest.approx(1.0)
    assert cosine_momentum(3, 0, 0.99, 1.0) == 1.0


def test_ema_update_follows_the_formula_and_leaves_buffers_alone():
    torch.manual_seed(0)
    online = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    target = copy.deepcopy(online)
    with torch.no_grad():
        for param in online.parameters():
            param.add_(torch.randn_like(param))
        online[1].running_mean.fill_(5.0)
    before = [p.clone() for p in target.parameters()]
    ema_update_(target, online, 0.9)
    for old, new, source in zip(before, target.parameters(), online.parameters(), strict=True):
        torch.testing.assert_close(new, 0.9 * old + 0.1 * source)
    assert torch.equal(target[1].running_mean, torch.zeros(2))


def test_ema_update_rejects_mismatched_networks():
    with pytest.raises(ValueError, match="different parameter lists"):
        ema_update_(nn.Linear(2, 2), nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2)), 0.9)


class _Recorder(Callback):
    """Snapshots target weights before and online/target weights after every optimizer step,
    and the batch sizes that the target and online backbones see."""

    def __init__(self) -> None:
        self.steps: list[dict] = []
        self.target_batch_sizes: list[int] = []
        self.online_batch_sizes: list[int] = []

    def on_fit_start(self, trainer, pl_module):
        pl_module.target_backbone.register_forward_hook(
            lambda module, args, out: self.target_batch_sizes.append(args[0].shape[0])
        )
        pl_module.backbone.register_forward_hook(
            lambda module, args, out: self.online_batch_sizes.append(args[0].shape[0])
        )

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        target_grads = [p.grad for p in pl_module.target_backbone.parameters()]
        target_grads += [p.grad for p in pl_module.target_projector.parameters()]
        self.steps.append(
            {
                "step": trainer.global_step,
                "target_grads": target_grads,
                "target_before": _params(pl_module, "target_"),
                "online_before": _params(pl_module, ""),
            }
        )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.steps[-1]["online_after"] = _params(pl_module, "")
        self.steps[-1]["target_after"] = _params(pl_module, "target_")


def _params(module: BYOL, prefix: str) -> list[torch.Tensor]:
    nets = [getattr(module, prefix + "backbone"), getattr(module, prefix + "projector")]
    return [p.detach().clone() for net in nets for p in net.parameters()]


def test_byol_target_is_the_ema_of_the_online_network_and_never_sees_rotations():
    torch.manual_seed(0)
    batch = 8
    model = BYOL(
        backbone=ResNet(width=8, cifar_stem=True),
        channels_last=False,
        optimizer=OptimizerConfig(name="sgd", lr=0.5, warmup_epochs=0),
        proj_hidden_dim=32,
        proj_output_dim=16,
        pred_hidden_dim=32,
        rotation_hidden_dim=32,
    )
    data = SSLDataModule(Synthetic(size=16), batch_size=batch, num_workers=0)
    recorder = _Recorder()
    trainer = Trainer(
        accelerator="cpu",
        max_steps=2,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[recorder],
    )
    trainer.fit(model, datamodule=data)

    assert model.total_steps == 2
    assert [step["step"] for step in recorder.steps] == [0, 1]
    # BYOL's schedule at global steps 0 and 1 of 2: 0.99, then 1 - 0.01 * (cos(pi/2) + 1) / 2
    for step, momentum in zip(recorder.steps, [0.99, 0.995], strict=True):
        assert all(grad is None for grad in step["target_grads"])
        moved = [
            not torch.equal(a, b)
            for a, b in zip(step["online_before"], step["online_after"], strict=True)
        ]
        assert sum(moved) > len(moved) // 2
        for old, new, online in zip(
            step["target_before"], step["target_after"], step["online_after"], strict=True
        ):
            torch.testing.assert_close(new, momentum * old + (1 - momentum) * online)
    # the target started as an exact copy of the online network
    first = recorder.steps[0]
    for target, online in zip(first["target_before"], first["online_before"], strict=True):
        assert torch.equal(target, online)
    assert all(not p.requires_grad for p in model.target_backbone.parameters())
    assert all(p.grad is None for p in model.target_projector.parameters())

    # two views of B per step go through the target; the 4B rotated copies only online
    assert recorder.target_batch_sizes == [batch] * 4
    assert recorder.online_batch_sizes == [batch, batch, 4 * batch] * 2
