import math

import pytest
import torch
from cli_utils import fit_tiny
from torch import nn

from rotaux.backbones import ViT
from rotaux.errors import RotauxError
from rotaux.methods import BYOL
from rotaux.optim import (
    LARS,
    OptimizerConfig,
    ParameterGroup,
    build_optimizer,
    cosine_between,
    parameter_groups,
    set_weight_decay,
    warmup_cosine,
    warmup_cosine_scheduler,
)


def _all(module: nn.Module) -> list[ParameterGroup]:
    return [ParameterGroup(list(module.named_parameters()))]


def test_parameter_groups_exclude_biases_and_norm_params_from_decay():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    frozen = nn.Linear(2, 2)
    frozen.requires_grad_(False)
    net.append(frozen)
    decayed, excluded = parameter_groups(_all(net), weight_decay=0.05, lr=0.5)
    assert {id(p) for p in decayed["params"]} == {id(net[0].weight), id(net[3].weight)}
    assert {id(p) for p in excluded["params"]} == {
        id(net[0].bias),
        id(net[1].weight),
        id(net[1].bias),
        id(net[3].bias),
    }
    assert decayed["weight_decay"] == 0.05 and decayed["lars_exclude"] is False
    assert excluded["weight_decay"] == 0.0 and excluded["lars_exclude"] is True
    assert (decayed["decayed"], excluded["decayed"]) == (True, False)
    assert decayed["lr"] == excluded["lr"] == 0.5
    assert decayed["fixed_lr"] is excluded["fixed_lr"] is False


def test_parameter_groups_exempt_parameters_by_name():
    net = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    groups = parameter_groups(_all(net), weight_decay=0.1, lr=1.0, exempt=frozenset({"1.weight"}))
    decayed, excluded = groups
    assert [id(p) for p in decayed["params"]] == [id(net[0].weight)]
    assert {id(p) for p in excluded["params"]} == {
        id(net[0].bias),
        id(net[1].weight),
        id(net[1].bias),
    }
    assert excluded["weight_decay"] == 0.0 and excluded["lars_exclude"] is True


def test_parameter_group_settings_reach_the_torch_groups():
    backbone, predictor, head, norm = (
        nn.Linear(4, 4),
        nn.Linear(4, 4),
        nn.Linear(4, 2),
        nn.Linear(2, 2),
    )
    groups = parameter_groups(
        [
            ParameterGroup(list(backbone.named_parameters())),
            ParameterGroup(list(predictor.named_parameters()), lr_scale=2.0, fixed_lr=True),
            ParameterGroup(list(head.named_parameters()), weight_decay=False),
            ParameterGroup(list(norm.named_parameters()), lars_adaptation=False),
        ],
        weight_decay=0.1,
        lr=0.5,
    )
    summary = [
        (
            len(g["params"]),
            g["lr"],
            g["weight_decay"],
            g["lars_exclude"],
            g["decayed"],
            g["fixed_lr"],
        )
        for g in groups
    ]
    assert summary == [
        (1, 0.5, 0.1, False, True, False),  # backbone weight
        (1, 0.5, 0.0, True, False, False),  # backbone bias
        (1, 1.0, 0.1, False, True, True),  # predictor weight: twice the rate, fixed
        (1, 1.0, 0.0, True, False, True),
        (2, 0.5, 0.0, True, False, False),  # head: no weight decay at all, so no LARS either
        (1, 0.5, 0.1, True, True, False),  # decayed but not LARS-adapted
        (1, 0.5, 0.0, True, False, False),
    ]


def _lars_step(weight, grad, **kwargs):
    param = nn.Parameter(torch.tensor(weight))
    optimizer = LARS([param], **kwargs)
    param.grad = torch.tensor(grad)
    optimizer.step()
    return param.detach(), optimizer


def test_lars_step_matches_the_trust_ratio_formula_by_hand():
    # ||w|| = 5, ||g|| = 1: ratio = 0.02 * 5 / (1 + 0.1 * 5) = 1/15; clipped: (1/15) / 0.5 = 2/15
    # update = (g + 0.1 w) * 2/15 = [0.3, 1.4] * 2/15 = [0.04, 0.18667]; w -= 0.5 * update
    param, _ = _lars_step([[3.0, 4.0]], [[0.0, 1.0]], lr=0.5, weight_decay=0.1, eta=0.02, clip=True)
    torch.testing.assert_close(param, torch.tensor([[2.98, 4.0 - 0.5 * 1.4 * 2 / 15]]))

    # without clipping the ratio 1/15 is used as is
    param, _ = _lars_step(
        [[3.0, 4.0]], [[0.0, 1.0]], lr=0.5, weight_decay=0.1, eta=0.02, clip=False
    )
    torch.testing.assert_close(param, torch.tensor([[3.0 - 0.5 * 0.3 / 15, 4.0 - 0.5 * 1.4 / 15]]))

    # eta = 1: ratio 10/3, divided by lr 20/3, clipped at 1: a plain SGD step on g + wd * w
    param, _ = _lars_step([[3.0, 4.0]], [[0.0, 1.0]], lr=0.5, weight_decay=0.1, eta=1.0, clip=True)
    torch.testing.assert_close(param, torch.tensor([[3.0 - 0.15, 4.0 - 0.7]]))


def test_lars_momentum_accumulates_scaled_updates():
    torch.manual_seed(0)
    start, grads = torch.randn(3, 4), [torch.randn(3, 4) for _ in range(3)]
    lr, wd, eta, momentum = 0.3, 0.01, 0.02, 0.9
    param = nn.Parameter(start.clone())
    optimizer = LARS([param], lr=lr, weight_decay=wd, eta=eta, momentum=momentum, clip=True)
    weight, buffer = start.clone().double(), None
    for grad in grads:
        param.grad = grad.clone()
        optimizer.step()
        g = grad.double()
        ratio = eta * weight.norm() / (g.norm() + wd * weight.norm())
        ratio = min(ratio / lr, 1.0)
        update = (g + wd * weight) * ratio
        buffer = update if buffer is None else momentum * buffer + update
        weight = weight - lr * buffer
        torch.testing.assert_close(param.detach().double(), weight)


def test_lars_excluded_group_takes_plain_sgd_steps():
    bias = nn.Parameter(torch.tensor([1.0, -2.0]))
    optimizer = LARS(
        [{"params": [bias], "weight_decay": 0.0, "lars_exclude": True}], lr=0.1, momentum=0.9
    )
    bias.grad = torch.tensor([0.5, 0.25])
    optimizer.step()
    torch.testing.assert_close(bias.detach(), torch.tensor([0.95, -2.025]))
    bias.grad = torch.tensor([1.0, 0.0])
    optimizer.step()
    # buffer = 0.9 * [0.5, 0.25] + [1, 0] = [1.45, 0.225]
    torch.testing.assert_close(bias.detach(), torch.tensor([0.95 - 0.145, -2.025 - 0.0225]))


def test_lars_decayed_group_without_adaptation_still_decays():
    # ParameterGroup(lars_adaptation=False) with weight decay: w -= lr * (g + wd * w), no ratio
    weight = nn.Parameter(torch.tensor([[3.0, 4.0]]))
    optimizer = LARS(
        [{"params": [weight], "weight_decay": 0.1, "lars_exclude": True}], lr=0.5, momentum=0.9
    )
    weight.grad = torch.tensor([[0.0, 1.0]])
    optimizer.step()
    torch.testing.assert_close(weight.detach(), torch.tensor([[3.0 - 0.15, 4.0 - 0.7]]))


def test_lars_trust_ratio_is_one_for_a_zero_weight_even_with_a_large_lr():
    # a zero-initialised weight has no scale to adapt to: plain SGD step (as in LARC/solo-learn),
    # not one shrunk by the clipping's division by the learning rate
    param, _ = _lars_step([[0.0, 0.0]], [[1.0, 2.0]], lr=4.0, weight_decay=0.1, clip=True)
    torch.testing.assert_close(param, torch.tensor([[-4.0, -8.0]]))
    param, _ = _lars_step([[0.0, 0.0]], [[1.0, 2.0]], lr=0.25, weight_decay=0.1, clip=True)
    torch.testing.assert_close(param, torch.tensor([[-0.25, -0.5]]))


def test_lars_skips_parameters_without_gradient():
    param = nn.Parameter(torch.ones(2, 2))
    optimizer = LARS([param], lr=1.0)
    optimizer.step()
    assert torch.equal(param.detach(), torch.ones(2, 2))
    assert not optimizer.state


def test_build_optimizer_uses_the_configured_algorithm_and_groups():
    net = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    lars = build_optimizer(net, OptimizerConfig(weight_decay=1e-4), lr=0.5)
    assert isinstance(lars, LARS)
    assert [g["weight_decay"] for g in lars.param_groups] == [1e-4, 0.0]
    assert [g["lars_exclude"] for g in lars.param_groups] == [False, True]
    assert [g["lr"] for g in lars.param_groups] == [0.5, 0.5]
    sgd = build_optimizer(net, OptimizerConfig(name="sgd", momentum=0.8), lr=0.1)
    assert type(sgd) is torch.optim.SGD and sgd.param_groups[0]["momentum"] == 0.8
    assert [g["weight_decay"] for g in sgd.param_groups] == [1e-5, 0.0]
    adamw = build_optimizer(net, OptimizerConfig(name="adamw", momentum=0.85), lr=1e-3)
    assert type(adamw) is torch.optim.AdamW and adamw.param_groups[0]["betas"] == (0.85, 0.999)
    config = OptimizerConfig(name="adamw", momentum=0.9, adam_beta2=0.95)
    assert build_optimizer(net, config, lr=1e-3).param_groups[0]["betas"] == (0.9, 0.95)


def test_build_optimizer_takes_parameter_groups_and_exemptions():
    net = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    groups = [
        ParameterGroup(list(net[0].named_parameters(prefix="0"))),
        ParameterGroup(list(net[1].named_parameters(prefix="1")), lr_scale=0.1),
    ]
    optimizer = build_optimizer(
        groups, OptimizerConfig(weight_decay=1e-4), lr=2.0, exempt=frozenset({"0.weight"})
    )
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([2.0, 0.2, 0.2])
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.0, 1e-4, 0.0]
    assert [id(p) for p in optimizer.param_groups[0]["params"]] == [
        id(net[0].weight),
        id(net[0].bias),
    ]


def test_build_optimizer_without_trainable_parameters_is_an_error():
    frozen = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(RotauxError, match="no trainable parameters"):
        build_optimizer(frozen, OptimizerConfig(), lr=1.0)


def test_warmup_cosine_values():
    # 10 warm-up steps then cosine over 100 steps down to 0.1
    assert warmup_cosine(0, 10, 110, 0.1) == pytest.approx(0.1)
    assert warmup_cosine(4, 10, 110, 0.1) == pytest.approx(0.5)
    assert warmup_cosine(9, 10, 110, 0.1) == pytest.approx(1.0)
    assert warmup_cosine(10, 10, 110, 0.1) == pytest.approx(1.0)
    assert warmup_cosine(60, 10, 110, 0.1) == pytest.approx(0.55)
    assert warmup_cosine(35, 10, 110, 0.1) == pytest.approx(0.1 + 0.9 * (1 + 2**-0.5) / 2)
    assert warmup_cosine(110, 10, 110, 0.1) == pytest.approx(0.1)
    assert warmup_cosine(500, 10, 110, 0.1) == pytest.approx(0.1)
    assert warmup_cosine(0, 0, 4, 0.0) == pytest.approx(1.0)
    assert warmup_cosine(2, 0, 4, 0.0) == pytest.approx(0.5)


def test_scheduler_applies_the_multiplier_per_step_and_resumes_exactly():
    param = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=2.0)
    scheduler = warmup_cosine_scheduler(optimizer, warmup_steps=2, total_steps=6, min_ratio=0.0)
    seen = []
    for _ in range(4):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = [2.0 * warmup_cosine(step, 2, 6, 0.0) for step in range(4)]
    assert seen == pytest.approx(expected)
    assert seen[:2] == pytest.approx([1.0, 2.0])

    resumed_optimizer = torch.optim.SGD([param], lr=2.0)
    resumed = warmup_cosine_scheduler(resumed_optimizer, 2, 6, 0.0)
    resumed.load_state_dict(scheduler.state_dict())
    resumed_optimizer.load_state_dict(optimizer.state_dict())
    assert resumed_optimizer.param_groups[0]["lr"] == pytest.approx(
        2.0 * warmup_cosine(4, 2, 6, 0.0)
    )
    resumed_optimizer.step()
    resumed.step()
    assert resumed_optimizer.param_groups[0]["lr"] == pytest.approx(
        2.0 * warmup_cosine(5, 2, 6, 0.0)
    )


def test_fixed_lr_groups_keep_their_rate_while_the_others_follow_warmup_cosine():
    weight, predictor = nn.Parameter(torch.zeros(2, 2)), nn.Parameter(torch.zeros(2, 2))
    groups = [ParameterGroup([("w", weight)]), ParameterGroup([("p", predictor)], fixed_lr=True)]
    optimizer = build_optimizer(groups, OptimizerConfig(name="sgd", weight_decay=0.0), lr=2.0)
    scheduler = warmup_cosine_scheduler(optimizer, warmup_steps=2, total_steps=6, min_ratio=0.0)
    scheduled, fixed = [], []
    for _ in range(6):
        scheduled.append(optimizer.param_groups[0]["lr"])
        fixed.append(optimizer.param_groups[1]["lr"])
        optimizer.step()
        scheduler.step()
    # warm-up (1/2, 2/2) then cosine over 4 steps: 1, (1 + cos(pi/4))/2, 1/2, (1 + cos(3pi/4))/2
    half_root = 2**-0.5
    expected = [1.0, 2.0, 2.0, 1.0 + half_root, 1.0, 1.0 - half_root]
    assert scheduled == pytest.approx(expected)
    # the fixed group starts at its peak rate: no warm-up and no decay
    assert fixed == [2.0] * 6


def test_weight_decay_follows_a_cosine_from_its_start_to_its_final_value():
    # DINO's ViT schedule 0.04 -> 0.4: half way the mean, 0.22
    assert cosine_between(0, 100, 0.04, 0.4) == pytest.approx(0.04)
    assert cosine_between(25, 100, 0.04, 0.4) == pytest.approx(0.4 - 0.36 * (1 + half()) / 2)
    assert cosine_between(50, 100, 0.04, 0.4) == pytest.approx(0.22)
    assert cosine_between(100, 100, 0.04, 0.4) == pytest.approx(0.4)
    assert cosine_between(150, 100, 0.04, 0.4) == pytest.approx(0.4)

    net = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    config = OptimizerConfig(name="sgd", weight_decay=0.04, final_weight_decay=0.4)
    optimizer = build_optimizer(net, config, lr=0.1)
    for step, value in [(0, 0.04), (50, 0.22), (100, 0.4)]:
        set_weight_decay(optimizer, config, step, total=100)
        decays = [group["weight_decay"] for group in optimizer.param_groups]
        # biases and normalisation parameters stay undecayed
        assert decays == pytest.approx([value, 0.0])

    # without a final value the decay is left as built
    constant = OptimizerConfig(name="sgd", weight_decay=0.04)
    optimizer = build_optimizer(net, constant, lr=0.1)
    set_weight_decay(optimizer, constant, 50, total=100)
    assert [group["weight_decay"] for group in optimizer.param_groups] == [0.04, 0.0]


def half() -> float:
    """cos(pi / 4)."""
    return 2**-0.5


def test_training_sets_the_scheduled_weight_decay_before_each_step(tmp_path):
    run = fit_tiny(
        tmp_path,
        "BYOL",
        "--model.rotation_weight",
        "0",
        "--model.proj_hidden_dim",
        "16",
        "--model.pred_hidden_dim",
        "16",
        "--model.optimizer.weight_decay",
        "0.04",
        "--model.optimizer.final_weight_decay",
        "0.4",
    )
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    (state,) = checkpoint["optimizer_states"]
    decays = sorted({round(group["weight_decay"], 12) for group in state["param_groups"]})
    # 3 steps: the last one (step 2 of 3) ran with 0.4 - 0.36 * (1 + cos(2 pi / 3)) / 2 = 0.31;
    # the undecayed groups stay at 0
    assert decays == [0.0, 0.31]


def test_scaled_lr_rules():
    assert OptimizerConfig(lr=1.0).scaled_lr(512) == pytest.approx(2.0)
    assert OptimizerConfig(lr=1.0).scaled_lr(64) == pytest.approx(0.25)
    assert OptimizerConfig(lr=1.0, lr_scaling="sqrt").scaled_lr(1024) == pytest.approx(2.0)
    assert OptimizerConfig(lr=0.3, lr_scaling="sqrt").scaled_lr(128) == pytest.approx(
        0.3 * math.sqrt(0.5)
    )
    assert OptimizerConfig(lr=0.3, lr_scaling="none").scaled_lr(4096) == pytest.approx(0.3)
    config = OptimizerConfig(lr=0.5, reference_batch_size=128)
    assert config.scaled_lr(256) == pytest.approx(1.0)


def test_solo_learn_cifar_byol_defaults():
    config = OptimizerConfig()
    assert (config.name, config.lr, config.reference_batch_size) == ("lars", 1.0, 256)
    assert (config.lars_eta, config.weight_decay, config.warmup_epochs) == (0.02, 1e-5, 10.0)
    assert config.lars_clip is True


@pytest.mark.parametrize(
    ("field", "value"),
    [("lr", 0.0), ("weight_decay", -1e-4), ("final_weight_decay", -0.1), ("warmup_epochs", -1.0)],
)
def test_invalid_optimizer_config_names_the_field(field, value):
    with pytest.raises(RotauxError, match=f"optimizer\\..*{field} must be"):
        OptimizerConfig(**{field: value})


def test_a_vits_position_embedding_and_cls_token_are_not_decayed():
    model = BYOL(
        backbone=ViT(size="tiny", patch_size=8, image_size=32),
        proj_hidden_dim=16,
        proj_output_dim=8,
        pred_hidden_dim=16,
        rotation_weight=0.0,
    )
    exempt = model.weight_decay_exemptions()
    assert exempt == {"backbone.pos_embed", "backbone.cls_token"}
    optimizer = build_optimizer(model.parameter_groups(), OptimizerConfig(), 1.0, exempt)
    undecayed = {id(p) for g in optimizer.param_groups if not g["decayed"] for p in g["params"]}
    decayed = {id(p) for g in optimizer.param_groups if g["decayed"] for p in g["params"]}
    assert {id(model.backbone.pos_embed), id(model.backbone.cls_token)} <= undecayed
    assert id(model.backbone.patch_embed.proj.weight) in decayed
    # the EMA target is not optimised at all
    assert not {id(p) for p in model.target_backbone.parameters()} & (decayed | undecayed)
