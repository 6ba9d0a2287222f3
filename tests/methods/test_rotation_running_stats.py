"""``rotation_running_stats=False``: the rotated batches are normalised with their own batch
statistics but leave the BatchNorm running statistics, which eval-mode features use, as they
were."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rotaux.backbones import ResNet
from rotaux.data.rotation import rotate_batch
from rotaux.methods import BYOL
from rotaux.methods.rotation import batch_statistics_only

pytestmark = pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")


def _norms() -> list[nn.Module]:
    torch.manual_seed(0)
    norms = [nn.BatchNorm2d(3), nn.BatchNorm2d(3, momentum=None), nn.SyncBatchNorm(3)]
    for norm in norms:
        # running statistics that a few earlier batches would have left
        norm(torch.randn(8, 3, 5, 5) * 2 + 1)
        norm(torch.randn(8, 3, 5, 5) * 2 + 1)
        with torch.no_grad():
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
    return norms


def _buffers(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: buffer.clone() for name, buffer in module.named_buffers()}


@pytest.mark.parametrize("index", [0, 1, 2], ids=["momentum-0.1", "momentum-None", "sync"])
def test_a_block_uses_batch_statistics_and_leaves_running_statistics_untouched(index):
    norm = _norms()[index].train()
    before = _buffers(norm)
    assert int(before["num_batches_tracked"]) == 2
    images = torch.randn(6, 3, 5, 5) * 3 - 2
    with batch_statistics_only(norm):
        out = norm(images)
        norm(torch.full((6, 3, 5, 5), float("nan")))  # a non-finite batch changes nothing either
    # normalised with the batch's own statistics, as a training-mode BatchNorm does
    expected = F.batch_norm(images, None, None, norm.weight, norm.bias, training=True, eps=1e-5)
    torch.testing.assert_close(out, expected)
    for name, value in _buffers(norm).items():
        assert torch.equal(value, before[name]), name
    # afterwards the layer tracks again
    assert norm.track_running_stats
    norm(images)
    assert int(norm.num_batches_tracked) == 3
    assert not torch.equal(norm.running_mean, before["running_mean"])


def test_eval_mode_inside_the_block_still_uses_the_running_statistics():
    norm = _norms()[0].eval()
    images = torch.randn(6, 3, 5, 5)
    with batch_statistics_only(norm):
        out = norm(images)
    torch.testing.assert_close(out, norm(images))


def _byol(rotation_running_stats: bool) -> BYOL:
    torch.manual_seed(0)
    return BYOL(
        backbone=ResNet(width=8, cifar_stem=True),
        channels_last=False,
        proj_hidden_dim=16,
        proj_output_dim=8,
        pred_hidden_dim=16,
        rotation_hidden_dim=16,
        rotation_running_stats=rotation_running_stats,
    ).train()


def _batch() -> dict:
    generator = torch.Generator().manual_seed(1)
    views = [torch.randn(4, 3, 16, 16, generator=generator) for _ in range(2)]
    rotation, labels = rotate_batch(torch.randn(4, 3, 16, 16, generator=generator) + 2)
    return {"views": views, "label": torch.arange(4), "rotation": rotation,
            "rotation_labels": labels}  # fmt: skip


@pytest.mark.parametrize("running_stats", [True, False])
def test_rotation_forward_updates_the_backbones_running_statistics_only_when_asked(running_stats):
    model = _byol(running_stats)
    before = _buffers(model.backbone)
    loss = model.total_loss(torch.tensor(0.0), _batch())
    after = _buffers(model.backbone)
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    if running_stats:
        # every BatchNorm layer of the backbone took the rotated batch in
        assert {name.rsplit(".", 1)[0] for name in changed} == {
            name for name, module in model.backbone.named_modules()
            if isinstance(module, nn.BatchNorm2d)
        }  # fmt: skip
    else:
        assert not changed
    # the rotation head's own BatchNorm (used by rotated images alone) keeps tracking
    assert int(model.rotation_head[1].num_batches_tracked) == 1
    # the loss is the same either way: training normalises with batch statistics
    other = _byol(not running_stats)
    torch.testing.assert_close(loss, other.total_loss(torch.tensor(0.0), _batch()))
