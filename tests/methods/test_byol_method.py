import inspect

import pytest
import torch
from cli_utils import fit_tiny, read_metrics

from rotaux.backbones import ResNet
from rotaux.losses import byol_loss
from rotaux.methods import BYOL
from rotaux.optim import OptimizerConfig, build_optimizer

# the steps below run without a Trainer, so their self.log calls have nowhere to go
pytestmark = pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")


def _tiny(rotation_weight: float = 0.4) -> BYOL:
    return BYOL(
        backbone=ResNet(width=8, cifar_stem=True),
        channels_last=False,
        proj_hidden_dim=32,
        proj_output_dim=16,
        pred_hidden_dim=24,
        rotation_weight=rotation_weight,
        rotation_hidden_dim=32,
    )


def test_byol_fits_with_rotation_and_logs_rotation_metrics(tmp_path):
    run = fit_tiny(
        tmp_path, "BYOL", "--model.proj_hidden_dim", "64", "--trainer.log_every_n_steps", "1"
    )
    rows = read_metrics(run)
    logged = set().union(*rows)
    assert {"train/loss", "train/ssl_loss", "train/rot_loss", "train/rot_acc"} <= logged
    assert "val/linear_top1" in logged
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    # the tiny run's backbone options reached the model
    assert checkpoint["rotaux_architecture"]["backbone"]["init_args"] == {
        "name": "resnet18",
        "cifar_stem": True,
        "width": 8,
        "channels": 3,
    }


def test_defaults_are_the_papers_and_solo_learns():
    # the rotation and base options come from the classes BYOL forwards **base_options to; a
    # subclass's default (BYOL's optimizer) overrides its base's
    defaults = {}
    for cls in reversed(BYOL.__mro__):
        if "__init__" in vars(cls):
            parameters = inspect.signature(cls.__init__).parameters.items()
            defaults |= {name: parameter.default for name, parameter in parameters}
    assert (defaults["proj_hidden_dim"], defaults["proj_output_dim"]) == (4096, 256)
    assert defaults["pred_hidden_dim"] == 4096
    assert (defaults["base_momentum"], defaults["final_momentum"]) == (0.99, 1.0)
    assert defaults["rotation_weight"] == 0.4
    assert (defaults["rotation_hidden_dim"], defaults["rotation_num_layers"]) == (2048, 2)


def test_heads_have_the_configured_sizes():
    model = _tiny()
    assert model.projector[0].in_features == model.num_features == 64
    assert (model.projector[0].out_features, model.projector[-1].out_features) == (32, 16)
    assert (model.predictor[0].in_features, model.predictor[0].out_features) == (16, 24)
    assert model.predictor[-1].out_features == 16
    assert model.rotation_head[0].out_features == 32


def test_training_step_loss_is_the_symmetrised_byol_loss():
    torch.manual_seed(0)
    model = _tiny(rotation_weight=0.0)
    views = [torch.randn(6, 3, 16, 16), torch.randn(6, 3, 16, 16)]
    with torch.no_grad():
        model.target_projector[0].weight.mul_(-1)  # a target that differs from the online net
    output = model.training_step({"views": views, "label": torch.zeros(6)}, 0)

    with torch.no_grad():
        predictions = [model.predictor(model.projector(model.backbone(v))) for v in views]
        targets = [model.target_projector(model.target_backbone(v)) for v in views]
    expected = byol_loss(predictions[0], predictions[1], targets[0], targets[1])
    torch.testing.assert_close(output["loss"], expected)
    torch.testing.assert_close(output["features"], model.backbone(views[0]).detach())
    output["loss"].backward()
    assert model.predictor[0].weight.grad is not None
    assert all(p.grad is None for p in model.target_backbone.parameters())


def test_optimizer_holds_the_online_network_only():
    model = _tiny()
    optimizer = build_optimizer(model, OptimizerConfig(), lr=1.0)
    optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}
    target = [*model.target_backbone.parameters(), *model.target_projector.parameters()]
    assert not optimized & {id(p) for p in target}
    online = [model.backbone, model.projector, model.predictor, model.rotation_head]
    assert {id(p) for net in online for p in net.parameters()} == optimized


def test_checkpoint_records_the_architecture():
    checkpoint = {}
    _tiny().on_save_checkpoint(checkpoint)
    assert checkpoint["rotaux_architecture"] == {
        "method": "BYOL",
        "backbone": {
            "class_path": "rotaux.backbones.resnet.ResNet",
            "init_args": {"name": "resnet18", "cifar_stem": True, "width": 8, "channels": 3},
        },
        "rotation_head": True,
    }
