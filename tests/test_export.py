import json
import re

import pytest
import torch
import torchvision
from lightning import LightningModule, Trainer
from torch import nn

from rotaux.errors import RotauxError
from rotaux.export import export_backbone, load_exported_backbone, main
from rotaux.methods import BYOL


def save_lightning_checkpoint(model: LightningModule, path) -> None:
    """Write ``model`` as Lightning's ModelCheckpoint would, without training it."""
    trainer = Trainer(
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    trainer.strategy.connect(model)
    trainer.save_checkpoint(path)


def untrained_byol(width: int, cifar_stem: bool) -> BYOL:
    """A BYOL whose online backbone differs from its EMA target and whose BatchNorm running
    statistics are not the initial ones, so a wrong or partial export changes the features."""
    torch.manual_seed(0)
    model = BYOL(
        backbone_width=width,
        cifar_stem=cifar_stem,
        proj_hidden_dim=16,
        proj_output_dim=8,
        pred_hidden_dim=16,
        rotation_weight=0.0,
    )
    with torch.no_grad():
        for module in model.backbone.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
        model.backbone.conv1.weight.mul_(2)
    return model


def test_width_64_export_loads_strictly_into_torchvision(tmp_path):
    model = untrained_byol(width=64, cifar_stem=True)
    save_lightning_checkpoint(model, tmp_path / "byol.ckpt")

    folder = export_backbone(tmp_path / "byol.ckpt", tmp_path / "export")

    reference = torchvision.models.resnet18()
    reference.fc = nn.Identity()
    reference.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    reference.maxpool = nn.Identity()
    reference.load_state_dict(torch.load(folder / "backbone.pt", weights_only=True), strict=True)
    images = torch.randn(2, 3, 32, 32)
    model.eval()
    reference.eval()
    with torch.no_grad():
        torch.testing.assert_close(reference(images), model.backbone(images))
    description = json.loads((folder / "backbone.json").read_text())
    assert description["name"] == "resnet18"
    assert description["cifar_stem"] is True
    assert description["width"] == 64
    assert description["num_features"] == 512
    assert description["method"] == "BYOL"
    assert description["source_checkpoint"] == str((tmp_path / "byol.ckpt").resolve())
    assert description["torchvision_compatible"] is True


def test_narrow_backbone_round_trips_through_load_exported_backbone(tmp_path, capsys):
    model = untrained_byol(width=8, cifar_stem=False)
    save_lightning_checkpoint(model, tmp_path / "byol.ckpt")

    assert main([str(tmp_path / "byol.ckpt"), str(tmp_path / "export")]) == 0
    assert str(tmp_path / "export") in capsys.readouterr().out

    loaded = load_exported_backbone(tmp_path / "export").eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model.eval().backbone(images))
    description = json.loads((tmp_path / "export" / "backbone.json").read_text())
    assert (description["width"], description["num_features"]) == (8, 64)
    assert description["torchvision_compatible"] is False


def test_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    missing = tmp_path / "nope.ckpt"
    with pytest.raises(RotauxError, match=re.escape(f"{missing} does not exist")):
        export_backbone(missing, tmp_path / "export")
    assert main([str(missing), str(tmp_path / "export")]) == 2
    assert "rotaux: error: Checkpoint" in capsys.readouterr().err


def test_files_that_are_not_rotaux_checkpoints_are_clear_errors(tmp_path):
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint")
    with pytest.raises(RotauxError, match="is not a PyTorch checkpoint"):
        export_backbone(text, tmp_path / "export")

    class NoBackbone(LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.head = nn.Linear(2, 2)

    save_lightning_checkpoint(NoBackbone(), tmp_path / "head.ckpt")
    with pytest.raises(RotauxError, match="holds no backbone"):
        export_backbone(tmp_path / "head.ckpt", tmp_path / "export")

    torch.save({"state_dict": {"backbone.conv1.weight": torch.zeros(1)}}, tmp_path / "other.ckpt")
    with pytest.raises(RotauxError, match="not written by a rotaux method"):
        export_backbone(tmp_path / "other.ckpt", tmp_path / "export")
    assert not (tmp_path / "export").exists()
