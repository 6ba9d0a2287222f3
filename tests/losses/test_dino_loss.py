import math

import numpy as np
import torch
from ddp import run_distributed

from rotaux.losses.dino import DINOLoss, teacher_temperature


def test_teacher_temperature_follows_the_official_linspace_then_stays_constant():
    schedule = np.concatenate([np.linspace(0.04, 0.07, 50), np.full(30, 0.07)])
    for epoch in range(80):
        assert math.isclose(teacher_temperature(epoch, 0.04, 0.07, 50), schedule[epoch])
    assert teacher_temperature(0, 0.04, 0.07, 0) == 0.07
    assert teacher_temperature(0, 0.04, 0.07, 1) == 0.04


def test_dino_loss_of_uniform_student_is_log_num_prototypes():
    loss = DINOLoss(num_prototypes=2)
    student = [torch.zeros(1, 2)] * 3
    teacher = [torch.tensor([[5.0, -5.0]]), torch.tensor([[0.0, 1.0]])]
    assert math.isclose(loss(student, teacher, 0.04).item(), math.log(2), rel_tol=1e-6)


def _naive_dino(student, teacher, center, student_temp: float, teacher_temp: float) -> float:
    def softmax(row: list[float]) -> list[float]:
        exps = [math.exp(x) for x in row]
        return [x / sum(exps) for x in exps]

    total, terms = 0.0, 0
    for i, t in enumerate(teacher):
        for v, s in enumerate(student):
            if v == i:
                continue
            ce = 0.0
            for b in range(len(s)):
                target = softmax(
                    [
                        (float(x) - float(c)) / teacher_temp
                        for x, c in zip(t[b], center, strict=True)
                    ]
                )
                log_p = [math.log(p) for p in softmax([float(x) / student_temp for x in s[b]])]
                ce -= sum(q * lp for q, lp in zip(target, log_p, strict=True))
            total += ce / len(s)
            terms += 1
    return total / terms


def test_dino_loss_matches_naive_loop_then_updates_the_center():
    generator = torch.Generator().manual_seed(0)
    student = [torch.randn(3, 4, generator=generator, requires_grad=True) for _ in range(4)]
    teacher = [torch.randn(3, 4, generator=generator) for _ in range(2)]
    old_center = torch.randn(4, generator=generator)
    loss_fn = DINOLoss(num_prototypes=4, student_temperature=0.1, center_momentum=0.9)
    loss_fn.center.copy_(old_center)
    loss = loss_fn(student, teacher, teacher_temperature=0.05)
    torch.testing.assert_close(loss_fn.center, old_center.unsqueeze(0))  # staged, not applied
    loss_fn.commit()
    expected = _naive_dino([s.detach() for s in student], teacher, old_center, 0.1, 0.05)
    assert math.isclose(loss.item(), expected, rel_tol=1e-5)
    # the center moves only after the loss used the old one
    expected_center = 0.9 * old_center + 0.1 * torch.cat(teacher).mean(dim=0)
    torch.testing.assert_close(loss_fn.center, expected_center.unsqueeze(0))
    assert "center" in loss_fn.state_dict()
    loss.backward()
    assert all(s.grad.abs().sum() > 0 for s in student)


def _center_on_rank(rank: int, world_size: int, teacher: list) -> tuple:
    loss_fn = DINOLoss(num_prototypes=3)
    local = [t.chunk(world_size)[rank] for t in teacher]
    for _ in range(2):
        loss_fn.update_center(local)
        loss_fn.commit()
    return loss_fn.center


def test_center_update_on_two_ranks_uses_the_global_batch_mean():
    generator = torch.Generator().manual_seed(1)
    teacher = [torch.randn(8, 3, generator=generator) for _ in range(2)]
    results = run_distributed(_center_on_rank, teacher)
    single = DINOLoss(num_prototypes=3)
    for _ in range(2):
        single.update_center(teacher)
        single.commit()
    mean = torch.cat(teacher).mean(dim=0, keepdim=True)
    torch.testing.assert_close(single.center, (0.1 + 0.9 * 0.1) * mean)
    for center in results:
        torch.testing.assert_close(center, single.center)
