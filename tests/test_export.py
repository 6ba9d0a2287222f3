import json
import re

import pytest
import torch
import torchvision
from lightning import LightningModule, Trainer
from torch import nn

from rotaux.backbones import Backbone, ResNet, ViT
from rotaux.errors import RotauxError
from rotaux.export import (
    export_backbone,
    load_exported_backbone,
    main,
    read_checkpoint_backbone,
    read_exported,
    read_pretrained,
)
from rotaux.methods import BYOL


class _NotAllowListed:
    """A class that torch.load(weights_only=True) does not accept."""


def save_lightning_checkpoint(model: LightningModule, path) -> None:
    """Write ``model`` as Lightning's ModelCheckpoint would, without training it."""
    trainer = Trainer(
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    trainer.strategy.connect(model)
    trainer.save_checkpoint(path)


def untrained_byol(backbone: Backbone) -> BYOL:
    """A BYOL whose online backbone differs from its EMA target and whose normalisation
    statistics and weights are not the initial ones, so a wrong or partial export changes the
    features."""
    torch.manual_seed(0)
    model = BYOL(
        backbone=backbone,
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
            if isinstance(module, nn.BatchNorm2d | nn.LayerNorm):
                module.weight.uniform_(0.5, 1.5)
        for parameter in model.backbone.parameters():
            parameter.mul_(1.5)
    return model


def run_load_snippet(folder, monkeypatch) -> nn.Module:
    """The network that the export's recorded ``load`` lines build, run in the export folder
    (they name ``backbone.pt`` relative to it)."""
    import timm

    monkeypatch.chdir(folder)
    namespace = {"torch": torch, "torchvision": torchvision, "timm": timm}
    exec(json.loads((folder / "backbone.json").read_text())["load"], namespace)
    return namespace["model"]


def test_width_64_export_loads_strictly_into_torchvision(tmp_path, monkeypatch):
    backbone = ResNet("resnet18", cifar_stem=True, width=64)
    model = untrained_byol(backbone)
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
    assert description["backbone"] == {
        "class_path": "rotaux.backbones.resnet.ResNet",
        "init_args": {"name": "resnet18", "cifar_stem": True, "width": 64, "channels": 3},
    }
    assert description["num_features"] == 512
    assert description["method"] == "BYOL"
    assert description["source_checkpoint"] == str((tmp_path / "byol.ckpt").resolve())
    assert description["library"] == "torchvision"
    # the recorded lines build torchvision's model and load the weights strictly
    loaded = run_load_snippet(folder, monkeypatch).eval()
    assert type(loaded) is torchvision.models.ResNet
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model.backbone(images))


def test_vit_export_loads_strictly_into_timm(tmp_path, monkeypatch):
    backbone = ViT(size="tiny", patch_size=8, image_size=32)
    model = untrained_byol(backbone)
    save_lightning_checkpoint(model, tmp_path / "byol.ckpt")

    folder = export_backbone(tmp_path / "byol.ckpt", tmp_path / "export")

    description = json.loads((folder / "backbone.json").read_text())
    assert description["backbone"] == backbone.record()
    assert (description["num_features"], description["library"]) == (192, "timm")
    loaded = run_load_snippet(folder, monkeypatch).eval()
    assert type(loaded).__module__.startswith("timm.")
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model.eval().backbone(images))


def test_narrow_backbone_round_trips_through_load_exported_backbone(tmp_path, capsys):
    model = untrained_byol(ResNet("resnet18", cifar_stem=False, width=8))
    save_lightning_checkpoint(model, tmp_path / "byol.ckpt")

    assert main([str(tmp_path / "byol.ckpt"), str(tmp_path / "export")]) == 0
    assert str(tmp_path / "export") in capsys.readouterr().out

    loaded = load_exported_backbone(tmp_path / "export").eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model.eval().backbone(images))
    description = json.loads((tmp_path / "export" / "backbone.json").read_text())
    assert description["backbone"]["init_args"]["width"] == 8
    assert description["num_features"] == 64
    assert description["library"] == "rotaux"
    assert "load_exported_backbone" in description["load"]
    # a folder and the checkpoint it came from describe the same pretrained backbone
    exported, original = (
        read_exported(tmp_path / "export"),
        read_checkpoint_backbone(tmp_path / "byol.ckpt"),
    )
    assert exported.backbone == original.backbone == ResNet("resnet18", width=8)
    assert exported.method == original.method == "BYOL"
    assert read_pretrained(tmp_path / "export").source == str((tmp_path / "export").resolve())
    assert read_pretrained(tmp_path / "byol.ckpt").source == str((tmp_path / "byol.ckpt").resolve())


def test_rotaux_0_1_exports_and_checkpoints_still_load(tmp_path):
    model = untrained_byol(ResNet("resnet18", cifar_stem=True, width=8)).eval()
    save_lightning_checkpoint(model, tmp_path / "byol.ckpt")
    folder = export_backbone(tmp_path / "byol.ckpt", tmp_path / "export")
    # backbone.json as rotaux 0.1 wrote it: the ResNet's name, stem and width
    legacy = {
        "name": "resnet18",
        "cifar_stem": True,
        "width": 8,
        "num_features": 64,
        "method": "BYOL",
        "source_checkpoint": "old.ckpt",
        "torchvision_compatible": False,
    }
    (folder / "backbone.json").write_text(json.dumps(legacy))
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model.backbone(images)
        torch.testing.assert_close(load_exported_backbone(folder).eval()(images), expected)
    # and a checkpoint whose architecture record is rotaux 0.1's
    checkpoint = torch.load(tmp_path / "byol.ckpt", weights_only=False)
    checkpoint["rotaux_architecture"] = {
        "method": "BYOL",
        "backbone": "resnet18",
        "cifar_stem": True,
        "backbone_width": 8,
    }
    torch.save(checkpoint, tmp_path / "old.ckpt")
    pretrained = read_checkpoint_backbone(tmp_path / "old.ckpt")
    assert pretrained.backbone == ResNet("resnet18", cifar_stem=True, width=8)
    with torch.no_grad():
        torch.testing.assert_close(pretrained.build().eval()(images), expected)


def test_exported_weights_that_do_not_fit_the_record_are_refused(tmp_path):
    save_lightning_checkpoint(untrained_byol(ResNet(width=8)), tmp_path / "byol.ckpt")
    folder = export_backbone(tmp_path / "byol.ckpt", tmp_path / "export")
    description = json.loads((folder / "backbone.json").read_text())
    description["backbone"]["init_args"]["width"] = 16
    (folder / "backbone.json").write_text(json.dumps(description))
    with pytest.raises(RotauxError, match="do not fit the architecture it records"):
        load_exported_backbone(folder)


def test_a_folder_without_the_export_files_is_a_clear_error(tmp_path):
    with pytest.raises(RotauxError, match="is not an exported backbone"):
        read_pretrained(tmp_path)


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

    # a pickle of a class that is not allow-listed is named as such, not as a broken file
    untrusted = {"state_dict": {}, "hyper_parameters": {"config": _NotAllowListed()}}
    torch.save(untrusted, tmp_path / "untrusted.ckpt")
    with pytest.raises(RotauxError, match="holds Python objects .*Unsupported global.*Listed"):
        export_backbone(tmp_path / "untrusted.ckpt", tmp_path / "export")

    torch.save({"state_dict": {"backbone.conv1.weight": torch.zeros(1)}}, tmp_path / "other.ckpt")
    with pytest.raises(RotauxError, match="not written by a rotaux method"):
        export_backbone(tmp_path / "other.ckpt", tmp_path / "export")
    assert not (tmp_path / "export").exists()
