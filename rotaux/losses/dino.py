"""DINO's self-distillation loss with teacher centering and sharpening (Caron et al.,
"Emerging Properties in Self-Supervised Vision Transformers", ICCV 2021, Sec. 3.1 and
Algorithm 1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rotaux.distributed import all_reduce_sum, world_size
from rotaux.staging import StagedUpdates


def teacher_temperature(
    epoch: int, warmup_temperature: float, temperature: float, warmup_epochs: int
) -> float:
    """DINO's teacher temperature at ``epoch``: ``numpy.linspace(warmup_temperature,
    temperature, warmup_epochs)[epoch]`` during the warm-up (as in the official code), then
    ``temperature``. A function of the epoch only, so it is exact after a resume."""
    if epoch >= warmup_epochs:
        return temperature
    if warmup_epochs == 1:
        return warmup_temperature
    return warmup_temperature + (temperature - warmup_temperature) * epoch / (warmup_epochs - 1)


class DINOLoss(StagedUpdates):
    """Cross-entropy between the sharpened, centred teacher distribution of each large crop and
    the student distribution of every other crop.

    ``center`` (a buffer, saved in checkpoints) is an EMA of the teacher's mean output over the
    global batch; subtracting it keeps one prototype from dominating, while the low teacher
    temperature keeps the outputs from becoming uniform. Each call stages the step's center
    update and :meth:`commit` applies it (:mod:`rotaux.staging`: during training, after the
    optimizer step, so a step the divergence guard drops leaves the center as it was).

    Args:
        num_prototypes: width of the head output.
        student_temperature: temperature of the student softmax (0.1 in the paper).
        center_momentum: EMA momentum of the center (0.9 in the paper).
    """

    center: torch.Tensor

    def __init__(
        self, num_prototypes: int, student_temperature: float = 0.1, center_momentum: float = 0.9
    ) -> None:
        super().__init__()
        self.student_temperature = student_temperature
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, num_prototypes))

    def forward(
        self,
        student: list[torch.Tensor],
        teacher: list[torch.Tensor],
        teacher_temperature: float,
    ) -> torch.Tensor:
        """Loss for the head outputs of every crop of the student (``(B, K)`` each, the large
        crops first, in the teacher's order) and of the large crops of the teacher; averaged
        over all (teacher crop, other student crop) pairs. Stages the center update, so the
        loss uses the center of the previous steps. Computed in float32."""
        log_probs = [F.log_softmax(s.float() / self.student_temperature, dim=-1) for s in student]
        total = student[0].new_zeros((), dtype=torch.float32)
        num_terms = 0
        for coded, output in enumerate(teacher):
            target = F.softmax((output.detach().float() - self.center) / teacher_temperature, -1)
            for view, log_prob in enumerate(log_probs):
                if view != coded:
                    total = total - (target * log_prob).sum(dim=-1).mean()
                    num_terms += 1
        self.update_center(teacher)
        return total / num_terms

    @torch.no_grad()
    def update_center(self, teacher: list[torch.Tensor]) -> None:
        """Stage ``center = m * center + (1 - m) * mean of the teacher outputs over all ranks``
        (the mean is reduced over the ranks now; the buffer changes at :meth:`commit`)."""
        outputs = torch.cat(teacher).float()
        batch_center = all_reduce_sum(outputs.sum(dim=0, keepdim=True)) / (
            len(outputs) * world_size()
        )
        self.stage(batch_center)

    @torch.no_grad()
    def apply_staged(self, batch_center: torch.Tensor) -> None:
        self.center.mul_(self.center_momentum).add_(batch_center, alpha=1 - self.center_momentum)
