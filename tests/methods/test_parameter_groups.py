"""Parameter groups: SimSiam's fixed predictor rate, ViT exemptions from weight decay, the
weight-decay schedule and MoCo v3's frozen patch projection."""

import pytest
import torch

from rotaux.backbones import ResNet, ViT
from rotaux.errors import RotauxError
from rotaux.methods import DINO, MoCoV3, SimSiam
from rotaux.optim import (
    OptimizerConfig,
    build_optimizer,
    cosine_between,
    set_weight_decay,
    warmup_cosine,
    warmup_cosine_scheduler,
)

TINY_RESNET = ResNet(width=8, cifar_stem=True)
TINY_VIT = ViT(size="tiny", patch_size=8, image_size=32)


def _optimizer(model, config: OptimizerConfig):
    return build_optimizer(
        model.parameter_groups(), config, config.lr, model.weight_decay_exemptions()
    )


def test_simsiam_predictor_keeps_its_rate_while_the_rest_follows_the_schedule():
    model = SimSiam(
        backbone=TINY_RESNET, proj_hidden_dim=16, proj_output_dim=16, pred_hidden_dim=8,
        rotation_weight=0.0,
    )  # fmt: skip
    config = OptimizerConfig(name="sgd", lr=0.5)
    optimizer = _optimizer(model, config)
    predictor = {id(param) for param in model.predictor.parameters()}
    fixed = [group for group in optimizer.param_groups if group["fixed_lr"]]
    assert {id(param) for group in fixed for param in group["params"]} == predictor
    scheduler = warmup_cosine_scheduler(optimizer, warmup_steps=2, total_steps=10, min_ratio=0.0)
    for step in range(6):
        for group in optimizer.param_groups:
            expected = 0.5 if group["fixed_lr"] else 0.5 * warmup_cosine(step, 2, 10, 0.0)
            assert group["lr"] == pytest.approx(expected)
        optimizer.step()
        scheduler.step()


def test_without_fixed_predictor_rate_every_group_follows_the_schedule():
    model = SimSiam(
        backbone=TINY_RESNET, proj_hidden_dim=16, proj_output_dim=16, pred_hidden_dim=8,
        rotation_weight=0.0, fixed_predictor_lr=False,
    )  # fmt: skip
    optimizer = _optimizer(model, OptimizerConfig(name="sgd", lr=0.5))
    assert not any(group["fixed_lr"] for group in optimizer.param_groups)


def test_vit_position_embedding_and_cls_token_get_no_weight_decay():
    model = MoCoV3(
        backbone=TINY_VIT, proj_hidden_dim=16, proj_output_dim=8, pred_hidden_dim=16,
        rotation_weight=0.0,
    )  # fmt: skip
    assert {"backbone.pos_embed", "backbone.cls_token"} <= model.weight_decay_exemptions()
    optimizer = _optimizer(model, OptimizerConfig(name="adamw", lr=1e-3, weight_decay=0.1))
    decay_of = {
        id(param): group["weight_decay"]
        for group in optimizer.param_groups
        for param in group["params"]
    }
    backbone = model.backbone
    assert decay_of[id(backbone.pos_embed)] == 0.0
    assert decay_of[id(backbone.cls_token)] == 0.0
    assert decay_of[id(backbone.blocks[0].attn.qkv.bias)] == 0.0
    assert decay_of[id(backbone.blocks[0].attn.qkv.weight)] == 0.1


def test_weight_decay_schedule_changes_only_decayed_groups():
    model = DINO(
        backbone=TINY_VIT, proj_hidden_dim=16, proj_output_dim=8, num_prototypes=16,
        rotation_weight=0.0,
    )  # fmt: skip
    config = OptimizerConfig(name="adamw", lr=1e-3, weight_decay=0.04, final_weight_decay=0.4)
    optimizer = _optimizer(model, config)
    for step, expected in ((0, 0.04), (50, 0.22), (100, 0.4), (150, 0.4)):
        set_weight_decay(optimizer, config, step, total=100)
        for group in optimizer.param_groups:
            assert group["weight_decay"] == pytest.approx(expected if group["decayed"] else 0.0)
    assert cosine_between(25, 100, 0.04, 0.4) == pytest.approx(0.4 - 0.36 * (1 + 2**-0.5) / 2)


def test_mocov3_frozen_patch_projection_is_left_out_of_the_optimizer():
    model = MoCoV3(
        backbone=TINY_VIT, proj_hidden_dim=16, proj_output_dim=8, pred_hidden_dim=16,
        rotation_weight=0.0, freeze_patch_embed=True,
    )  # fmt: skip
    optimized = {
        id(param)
        for group in _optimizer(model, OptimizerConfig()).param_groups
        for param in group["params"]
    }
    patch = list(model.backbone.patch_embed.parameters())
    assert patch and not any(id(param) in optimized for param in patch)
    assert id(model.backbone.blocks[0].attn.qkv.weight) in optimized
    with pytest.raises(RotauxError, match="patch projection"):
        MoCoV3(backbone=TINY_RESNET, freeze_patch_embed=True)


@pytest.mark.parametrize(("backbone", "projector_layers"), [(TINY_RESNET, 2), (TINY_VIT, 3)])
def test_mocov3_heads_follow_the_backbone_family(backbone, projector_layers):
    model = MoCoV3(backbone=backbone, proj_hidden_dim=16, proj_output_dim=8, pred_hidden_dim=16)
    linears = [m for m in model.projector if isinstance(m, torch.nn.Linear)]
    assert len(linears) == projector_layers
    # the predictor ends in a BatchNorm for ViTs only (the paper's code)
    assert isinstance(model.predictor[-1], torch.nn.BatchNorm1d) == (projector_layers == 3)
