from types import SimpleNamespace

import pytest
from lightning import LightningModule

from rotaux.backbones import ResNet
from rotaux.callbacks import CompileBackbones
from rotaux.errors import RotauxError
from rotaux.methods import BYOL


def _byol() -> BYOL:
    return BYOL(backbone=ResNet(width=8, cifar_stem=True), proj_hidden_dim=16, pred_hidden_dim=16)


def _compiled(module) -> bool:
    return module._compiled_call_impl is not None


def test_compiles_the_online_and_target_backbones_in_place():
    model = _byol()
    names = list(model.state_dict())
    CompileBackbones(enabled=True).setup(SimpleNamespace(), model, "fit")
    assert _compiled(model.backbone) and _compiled(model.target_backbone)
    # heads and the backbone's own layers stay eager: one compiled graph per backbone
    assert not any(_compiled(module) for module in model.projector.modules())
    assert not any(_compiled(module) for module in model.rotation_head.modules())
    assert not _compiled(model.backbone.layer1)
    # checkpoints and exports keep the plain parameter names
    assert list(model.state_dict()) == names


def test_disabled_by_default():
    model = _byol()
    CompileBackbones().setup(SimpleNamespace(), model, "fit")
    assert not any(_compiled(module) for module in model.modules())


def test_a_module_without_a_backbone_is_an_error():
    with pytest.raises(RotauxError, match="has none"):
        CompileBackbones(enabled=True).setup(SimpleNamespace(), LightningModule(), "fit")
