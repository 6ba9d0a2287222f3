import math

import pytest
import torch
from torch import nn

from rotaux.errors import RotauxError
from rotaux.optim import (
    LARS,
    OptimizerConfig,
    build_optimizer,
    parameter_groups,
    warmup_cosine,
    warmup_cosine_scheduler,
)


def test_parameter_groups_exclude_biases_and_norm_params_from_decay():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    frozen = nn.Linear(2, 2)
    frozen.requires_grad_(False)
    net.append(frozen)
    decayed, excluded = parameter_groups(net, weight_decay=0.05)
    assert {id(p) for p in decayed["params"]} == {id(net[0].weight), id(net[3].weight)}
    assert {id(p) for p in excluded["params"]} == {
        id(net[0].bias),
        id(net[1].weight),
        id(net[1].bias),
        id(net[3].bias),
    }
    assert decayed["weight_decay"] == 0.05 and not decayed.get("lars_exclude", False)
    assert excluded["weight_decay"] == 0.0 and excluded["lars_exclude"] is True


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
    ("field", "value"), [("lr", 0.0), ("weight_decay", -1e-4), ("warmup_epochs", -1.0)]
)
def test_invalid_optimizer_config_names_the_field(field, value):
    with pytest.raises(RotauxError, match=f"optimizer.{field}"):
        OptimizerConfig(**{field: value})
