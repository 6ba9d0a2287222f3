import math

import torch
import torch.nn.functional as F
from ddp import run_distributed

from rotaux.losses.ressl import ressl_loss
from rotaux.queue import FeatureQueue


def _naive_ressl(student, teacher, queue, student_temperature, teacher_temperature) -> float:
    def unit(vector: torch.Tensor) -> list[float]:
        norm = math.sqrt(sum(float(x) ** 2 for x in vector))
        return [float(x) / norm for x in vector]

    memory = [unit(row) for row in queue.double()]
    total = 0.0
    for s_row, t_row in zip(student.double(), teacher.double(), strict=True):
        s, t = unit(s_row), unit(t_row)
        s_logits = [
            sum(a * b for a, b in zip(s, m, strict=True)) / student_temperature for m in memory
        ]
        t_logits = [
            sum(a * b for a, b in zip(t, m, strict=True)) / teacher_temperature for m in memory
        ]
        t_norm = sum(math.exp(x) for x in t_logits)
        s_log_z = math.log(sum(math.exp(x) for x in s_logits))
        total -= sum(
            math.exp(tl) / t_norm * (sl - s_log_z)
            for tl, sl in zip(t_logits, s_logits, strict=True)
        )
    return total / len(student)


def test_ressl_loss_of_orthogonal_queue_matches_hand_computed_value():
    queue = torch.eye(2)
    teacher, student = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 3.0]])
    # teacher relation: softmax([1, 0] / 0.04); student: log softmax([0, 1] / 0.1)
    p_first = 1 / (1 + math.exp(-25))
    log_first, log_second = -10 - math.log(1 + math.exp(-10)), -math.log(1 + math.exp(-10))
    expected = -(p_first * log_first + (1 - p_first) * log_second)
    loss = ressl_loss(student, teacher, queue, 0.1, 0.04)
    assert math.isclose(loss.item(), expected, rel_tol=1e-6)


def test_ressl_loss_matches_naive_loop_and_only_the_student_gets_a_gradient():
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(5, 4, generator=generator, requires_grad=True)
    teacher = torch.randn(5, 4, generator=generator, requires_grad=True)
    queue = torch.randn(7, 4, generator=generator, requires_grad=True)
    loss = ressl_loss(student, teacher, queue, 0.1, 0.04)
    expected = _naive_ressl(student.detach(), teacher.detach(), queue.detach(), 0.1, 0.04)
    assert math.isclose(loss.item(), expected, rel_tol=1e-5)
    loss.backward()
    assert student.grad.abs().sum() > 0
    assert teacher.grad is None and queue.grad is None


def test_ressl_loss_stays_float32_under_bf16_autocast():
    generator = torch.Generator().manual_seed(1)
    student, teacher, queue = (torch.randn(8, 16, generator=generator) for _ in range(3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = ressl_loss(student, teacher, queue)
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, ressl_loss(student, teacher, queue))


def _step(rank: int, world_size: int, student, teacher, queue_rows) -> tuple:
    """ReSSL's step on this rank's share: the loss against the queue, then the teacher
    projections of every rank pushed into it."""
    local_student = student.chunk(world_size)[rank].clone().requires_grad_(True)
    local_teacher = teacher.chunk(world_size)[rank]
    queue = FeatureQueue(len(queue_rows), queue_rows.shape[1])
    queue.rows.copy_(queue_rows)
    loss = ressl_loss(local_student, local_teacher, queue.rows)
    loss.backward()
    queue.push(F.normalize(local_teacher, dim=-1))
    queue.commit()
    return loss.detach(), local_student.grad, queue.rows.clone(), queue.pointer.clone()


def test_ressl_step_on_two_ranks_matches_one_process_with_the_whole_batch():
    generator = torch.Generator().manual_seed(2)
    student, teacher = (
        torch.randn(8, 6, generator=generator),
        torch.randn(8, 6, generator=generator),
    )
    queue_rows = F.normalize(torch.randn(12, 6, generator=generator), dim=-1)
    loss, grad, rows, pointer = _step(0, 1, student, teacher, queue_rows)
    results = run_distributed(_step, student, teacher, queue_rows)
    torch.testing.assert_close(sum(result[0] for result in results) / 2, loss)
    torch.testing.assert_close(torch.cat([result[1] / 2 for result in results]), grad)
    for _, _, rank_rows, rank_pointer in results:
        # the queue takes the teacher projections of both ranks, in rank order
        torch.testing.assert_close(rank_rows, rows)
        assert int(rank_pointer) == int(pointer) == 8
    torch.testing.assert_close(rows[:8], F.normalize(teacher, dim=-1))
