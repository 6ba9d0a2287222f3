"""ReSSL's relational loss (Zheng et al., "ReSSL: Relational Self-Supervised Learning with Weak
Augmentation", NeurIPS 2021, Eqs. 1-3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def ressl_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    queue: torch.Tensor,
    student_temperature: float = 0.1,
    teacher_temperature: float = 0.04,
) -> torch.Tensor:
    """Cross-entropy between the teacher's and the student's relations to a queue of past
    teacher embeddings.

    ``student`` are the ``(N, D)`` projections of the strongly augmented view, ``teacher`` those
    of the momentum teacher on the weakly augmented view (no gradient), ``queue`` the ``(K, D)``
    memory. After L2 normalisation each sample's relation is the softmax over the queue of its
    cosine similarities divided by a temperature; the teacher's, sharpened by the lower
    ``teacher_temperature`` (0.04 in the paper and solo-learn), is the target of the student's
    (``student_temperature`` 0.1): ``-sum_k p_t(k) log p_s(k)``, averaged over the samples. The
    queue is the same on every rank and each sample's term involves only itself and the queue,
    so the mean of the ranks' losses is the global loss. Computed in float32 with autocast off.
    """
    with torch.autocast(student.device.type, enabled=False):
        student = F.normalize(student.float(), dim=-1)
        teacher = F.normalize(teacher.detach().float(), dim=-1)
        queue = F.normalize(queue.detach().float(), dim=-1)
        targets = F.softmax(teacher @ queue.T / teacher_temperature, dim=-1)
        log_probs = F.log_softmax(student @ queue.T / student_temperature, dim=-1)
        return -(targets * log_probs).sum(dim=-1).mean()
