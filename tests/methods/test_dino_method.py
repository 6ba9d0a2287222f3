import json

import pytest
import torch
import torch.nn.functional as F
from cli_utils import fit_tiny, printed_model_options, read_metrics

from rotaux.backbones import ResNet
from rotaux.heads import DINOHead
from rotaux.methods.dino import DINO

MODEL = "rotaux.methods.dino.DINO"
SMALL = ["--model.proj_hidden_dim", "32", "--model.num_prototypes", "20"]
# 2 large crops then 2 small ones of 16 px
MULTI_CROP = json.dumps(
    [
        {"crop_size": 32, "num_crops": 2},
        {"crop_size": 16, "crop_scale": [0.05, 0.3], "num_crops": 2},
    ]
)
ROTATION_METRICS = {"train/rot_loss", "train/rot_acc"}


def _tiny_dino(**overrides) -> DINO:
    torch.manual_seed(0)
    options = dict(
        backbone=ResNet(width=8, cifar_stem=True),
        proj_hidden_dim=16,
        proj_output_dim=8,
        num_prototypes=12,
        rotation_weight=0,
    )
    return DINO(**(options | overrides))


@pytest.mark.parametrize("rotation", [True, False])
def test_dino_fits_with_multi_crop_and_keeps_its_center_in_the_checkpoint(tmp_path, rotation):
    extra = [] if rotation else ["--model.rotation_weight", "0"]
    run = fit_tiny(
        tmp_path,
        MODEL,
        *SMALL,
        "--data.augmentations",
        MULTI_CROP,
        "--trainer.log_every_n_steps",
        "1",
        "--model.warmup_teacher_temperature_epochs",
        "2",
        *extra,
    )
    rows = read_metrics(run)
    logged = set().union(*rows)
    assert {"train/loss", "train/ssl_loss", "train/ema_momentum", "val/linear_top1"} <= logged
    assert logged & ROTATION_METRICS == (ROTATION_METRICS if rotation else set())
    # epoch 0 of the warm-up: the teacher temperature starts at 0.04
    temperatures = [
        row["train/teacher_temperature"] for row in rows if "train/teacher_temperature" in row
    ]
    assert temperatures and all(t == pytest.approx(0.04) for t in temperatures)
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert any(key.startswith("rotation_head.") for key in state) is rotation
    assert state["dino_loss.center"].shape == (1, 20) and state["dino_loss.center"].abs().sum() > 0


def test_print_config_lists_every_constructor_option(capsys):
    printed_model_options(capsys, MODEL, DINO)


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
@pytest.mark.parametrize("freeze_epochs", [0, 1])
def test_teacher_sees_only_the_large_crops_and_the_last_layer_is_frozen_first(freeze_epochs):
    model = _tiny_dino(freeze_last_layer_epochs=freeze_epochs)
    seen = {"student": [], "teacher": []}
    for name, network in (("student", model.backbone), ("teacher", model.teacher_backbone)):
        network.register_forward_hook(
            lambda module, inputs, output, name=name: seen[name].append(tuple(inputs[0].shape))
        )
    views = [torch.randn(4, 3, 16, 16) for _ in range(2)] + [torch.randn(4, 3, 8, 8)] * 3
    model.training_step({"views": views}, 0)["loss"].backward()
    # crops of one size go through the backbone together
    assert seen == {"student": [(8, 3, 16, 16), (12, 3, 8, 8)], "teacher": [(8, 3, 16, 16)]}
    model.on_after_backward()  # current_epoch is 0
    assert (model.head.last_layer.weight.grad is None) is (freeze_epochs == 1)
    assert model.head.mlp[0].weight.grad is not None
    assert all(p.grad is None for p in model.teacher_head.parameters())


def test_dino_head_outputs_float32_cosines_to_weight_normalised_prototypes():
    torch.manual_seed(0)
    head = DINOHead(6, hidden_dim=16, bottleneck_dim=4, out_dim=10, num_layers=3)
    features = torch.randn(5, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = head(features)
    assert logits.dtype == torch.float32 and logits.shape == (5, 10)
    bottleneck = F.normalize(head.mlp(features), dim=1)
    prototypes = F.normalize(head.last_layer.weight, dim=1)
    # the MLP ran in bfloat16 under autocast; the cosines themselves are float32
    torch.testing.assert_close(logits, bottleneck @ prototypes.T, atol=2e-2, rtol=0)
    with torch.no_grad():
        head.last_layer.weight.mul_(5.0)  # the weight's norm does not matter (g fixed to 1)
    torch.testing.assert_close(head(features), bottleneck @ prototypes.T)
    assert (logits.abs() <= 1 + 1e-6).all()
