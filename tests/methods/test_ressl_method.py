import pytest
import torch
import torch.nn.functional as F

from rotaux.backbones import ResNet
from rotaux.methods.ressl import ReSSL

pytestmark = pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")


def test_student_sees_the_strong_view_the_teacher_the_weak_one_and_the_queue_its_output():
    torch.manual_seed(0)
    model = ReSSL(
        backbone=ResNet(width=8, cifar_stem=True),
        proj_hidden_dim=16,
        proj_output_dim=8,
        queue_size=12,
        rotation_weight=0.0,
        channels_last=False,
    )
    seen: dict[str, list[torch.Tensor]] = {"student": [], "teacher": []}
    model.backbone.register_forward_pre_hook(lambda _, args: seen["student"].append(args[0]))
    model.teacher_backbone.register_forward_pre_hook(
        lambda _, args: seen["teacher"].append(args[0])
    )
    strong, weak = torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)
    queue_before = model.queue.rows.clone()
    model.training_step({"views": [strong, weak], "label": torch.zeros(4, dtype=torch.long)}, 0)
    assert len(seen["student"]) == 1 and torch.equal(seen["student"][0], strong)
    assert len(seen["teacher"]) == 1 and torch.equal(seen["teacher"][0], weak)
    # the step's teacher projections join the queue when the step is committed
    assert torch.equal(model.queue.rows, queue_before)
    model.queue.commit()
    with torch.no_grad():
        expected = F.normalize(model.teacher_projector(model.teacher_backbone(weak)), dim=-1)
    torch.testing.assert_close(model.queue.rows[:4], expected)
    torch.testing.assert_close(model.queue.rows[4:], queue_before[4:])
