"""iBOT's masked patch-token self-distillation (Zhou et al., "iBOT: Image BERT Pre-Training with
Online Tokenizer", ICLR 2022, Sec. 3.2, Eq. 2 and Algorithm 1). Its [CLS] self-distillation is
DINO's loss (:class:`~rotaux.losses.dino.DINOLoss`) on the masked global crops."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rotaux.distributed import all_reduce_sum, world_size
from rotaux.staging import StagedUpdates


def masked_patch_distillation(
    student_logits: torch.Tensor,
    teacher_probabilities: torch.Tensor,
    mask: torch.Tensor,
    student_temperature: float = 0.1,
) -> torch.Tensor:
    """Cross-entropy between the teacher's distributions ``(B, N, K)`` over the prototypes for
    the patch tokens of an unmasked crop and the student's logits ``(B, N, K)`` for the same crop
    with the tokens of ``mask`` ``(B, N)`` (True = masked) replaced by the mask token, over the
    masked tokens only: per image ``sum over masked tokens of CE / max(masked count, 1)``, then
    the mean over the images (an image without masked tokens adds 0, as in the official code).
    Per-image terms only, so under DDP the mean of the rank losses is the global-batch loss.
    Computed in float32; no gradient to the teacher."""
    log_probs = F.log_softmax(student_logits.float() / student_temperature, dim=-1)
    per_token = -(teacher_probabilities.detach().float() * log_probs).sum(dim=-1)
    mask = mask.float()
    per_image = (per_token * mask).sum(dim=-1) / mask.sum(dim=-1).clamp(min=1.0)
    return per_image.mean()


class MaskedPatchLoss(StagedUpdates):
    """iBOT's patch loss with its own teacher centering: :func:`masked_patch_distillation` of
    every global crop against the teacher's centred, sharpened patch distributions of the same
    crop, averaged over the crops.

    ``center`` (a buffer, saved in checkpoints) is an EMA of the teacher's patch outputs,
    averaged over the tokens of each image and then over the global batch of every crop (the
    official ``center2``). Each call stages the step's center update and :meth:`commit` applies
    it (:mod:`rotaux.staging`: during training, after the optimizer step).

    Args:
        num_prototypes: width of the head's patch output.
        student_temperature: temperature of the student softmax (0.1 in the paper).
        center_momentum: EMA momentum of the center (0.9 in the paper's code).
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
        masks: list[torch.Tensor],
        teacher_temperature: float,
    ) -> torch.Tensor:
        """Loss for the student's ``(B, N, K)`` patch outputs of each masked global crop, the
        teacher's of the same crops unmasked and the crops' ``(B, N)`` masks. Stages the center
        update, so the loss uses the center of the previous steps."""
        total = student[0].new_zeros((), dtype=torch.float32)
        for student_crop, teacher_crop, mask in zip(student, teacher, masks, strict=True):
            target = F.softmax(
                (teacher_crop.detach().float() - self.center) / teacher_temperature, -1
            )
            total = total + masked_patch_distillation(
                student_crop, target, mask, self.student_temperature
            )
        self.update_center(teacher)
        return total / len(student)

    @torch.no_grad()
    def update_center(self, teacher: list[torch.Tensor]) -> None:
        """Stage ``center = m * center + (1 - m) * mean over all ranks' images of each image's
        mean patch output`` (reduced over the ranks now; the buffer changes at :meth:`commit`)."""
        per_image = torch.cat(teacher).float().mean(dim=1)
        batch_center = all_reduce_sum(per_image.sum(dim=0, keepdim=True)) / (
            len(per_image) * world_size()
        )
        self.stage(batch_center)

    @torch.no_grad()
    def apply_staged(self, batch_center: torch.Tensor) -> None:
        self.center.mul_(self.center_momentum).add_(batch_center, alpha=1 - self.center_momentum)
