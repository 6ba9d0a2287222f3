import math

import pytest
import torch
import torch.nn.functional as F
from ddp import run_distributed

from rotaux.losses.ibot import MaskedPatchLoss, masked_patch_distillation


def _naive_patch_loss(student, teacher_probs, mask, temperature: float) -> float:
    """Per image: the mean over its masked tokens of the cross-entropy, in float64 loops; images
    without masked tokens add 0; then the mean over images."""
    per_image = []
    for b in range(student.shape[0]):
        terms = []
        for n in range(student.shape[1]):
            if not mask[b, n]:
                continue
            logits = [x / temperature for x in student[b, n].tolist()]
            log_norm = math.log(sum(math.exp(x) for x in logits))
            terms.append(
                -sum(
                    p * (x - log_norm)
                    for p, x in zip(teacher_probs[b, n].tolist(), logits, strict=True)
                )
            )
        per_image.append(sum(terms) / max(len(terms), 1))
    return sum(per_image) / len(per_image)


def test_masked_patch_distillation_matches_naive_loop_and_ignores_unmasked_tokens():
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(3, 5, 6, generator=generator, requires_grad=True)
    teacher = F.softmax(torch.randn(3, 5, 6, generator=generator), dim=-1)
    mask = torch.tensor([[1, 0, 1, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 0]], dtype=torch.bool)
    loss = masked_patch_distillation(student, teacher, mask, 0.1)
    expected = _naive_patch_loss(student.detach(), teacher, mask, 0.1)
    assert math.isclose(loss.item(), expected, rel_tol=1e-5)
    loss.backward()
    assert (student.grad[~mask] == 0).all() and (student.grad[mask].abs().sum(-1) > 0).all()


def test_patch_loss_centres_the_teacher_and_then_updates_the_center():
    loss = MaskedPatchLoss(4, student_temperature=0.1, center_momentum=0.9)
    loss.center.copy_(torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
    student = [torch.zeros(1, 2, 4), torch.zeros(1, 2, 4)]
    teacher = [torch.tensor([[[1.0, 0.0, 0.0, 0.0], [3.0, 0.0, 0.0, 0.0]]]), torch.zeros(1, 2, 4)]
    masks = [torch.tensor([[True, False]]), torch.tensor([[True, True]])]
    value = loss(student, teacher, masks, teacher_temperature=0.5)
    # uniform student: the cross-entropy is log 4 for any target
    assert value.item() == pytest.approx(math.log(4))
    # staged: the buffer changes at commit (after the optimizer step in training)
    torch.testing.assert_close(loss.center, torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
    loss.center.zero_()
    loss.commit()
    # per-image token means [2, 0, 0, 0] and [0, 0, 0, 0], averaged: [1, 0, 0, 0], times 0.1
    torch.testing.assert_close(loss.center, torch.tensor([[0.1, 0.0, 0.0, 0.0]]))
    # with a peaked student, the centred teacher of crop 1's masked token 0 is
    # softmax(([1, 0, 0, 0] - [1, 0, 0, 0]) / 0.5): uniform again, so -mean log p
    peaked = [torch.tensor([[[2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]]), torch.zeros(1, 2, 4)]
    log_p = F.log_softmax(peaked[0][0, 0] / 0.1, dim=-1)
    fresh = MaskedPatchLoss(4, 0.1, 0.9)
    fresh.center.copy_(torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
    value = fresh(peaked, teacher, masks, teacher_temperature=0.5)
    assert value.item() == pytest.approx(((-log_p.mean()) + math.log(4)).item() / 2)


def _patch_loss_on_rank(rank: int, world_size: int, student, teacher, masks) -> tuple:
    loss = MaskedPatchLoss(6, 0.1, 0.9)
    local_student = [crop.chunk(world_size)[rank].clone().requires_grad_(True) for crop in student]
    value = loss(
        local_student,
        [crop.chunk(world_size)[rank] for crop in teacher],
        [mask.chunk(world_size)[rank] for mask in masks],
        0.07,
    )
    value.backward()
    loss.commit()
    return value.detach(), loss.center.clone(), [crop.grad for crop in local_student]


def test_patch_loss_and_center_on_two_ranks_match_one_process_with_the_whole_batch():
    generator = torch.Generator().manual_seed(3)
    student = [torch.randn(4, 3, 6, generator=generator) for _ in range(2)]
    teacher = [torch.randn(4, 3, 6, generator=generator) for _ in range(2)]
    masks = [torch.rand(4, 3, generator=generator) < 0.5 for _ in range(2)]
    ranks = run_distributed(_patch_loss_on_rank, student, teacher, masks)
    loss = MaskedPatchLoss(6, 0.1, 0.9)
    single = [crop.clone().requires_grad_(True) for crop in student]
    value = loss(single, teacher, masks, 0.07)
    value.backward()
    loss.commit()
    torch.testing.assert_close(torch.stack([r[0] for r in ranks]).mean(), value.detach())
    for _, center, _ in ranks:
        torch.testing.assert_close(center, loss.center)
    assert loss.center.abs().sum() > 0
    for crop, whole in enumerate(single):
        torch.testing.assert_close(torch.cat([r[2][crop] / 2 for r in ranks]), whole.grad)
