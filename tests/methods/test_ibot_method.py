import pytest
import torch
import torch.nn.functional as F
from cli_utils import printed_model_options

from rotaux.backbones import ResNet, ViT
from rotaux.errors import RotauxError
from rotaux.losses.dino import DINOLoss
from rotaux.losses.ibot import masked_patch_distillation
from rotaux.methods.ibot import IBOT
from rotaux.methods.vit_tokens import patch_embeddings

MODEL = "rotaux.methods.ibot.IBOT"
TINY_VIT = ViT(size="tiny", patch_size=8, image_size=32)

pytestmark = pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")


def _tiny_ibot(**overrides) -> IBOT:
    torch.manual_seed(0)
    options = dict(
        backbone=TINY_VIT,
        proj_hidden_dim=32,
        proj_output_dim=16,
        num_prototypes=24,
        rotation_weight=0,
        channels_last=False,
    )
    return IBOT(**(options | overrides))


def _views(small: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    large = [torch.randn(4, 3, 32, 32, generator=generator) for _ in range(2)]
    return large + [torch.randn(4, 3, 16, 16, generator=generator) for _ in range(small)]


def test_student_sees_mask_tokens_where_masked_and_the_teacher_the_whole_crops():
    model = _tiny_ibot(mask_probability=1.0, mask_ratio_range=(0.4, 0.4))
    seen = {}
    for name in ("backbone", "teacher_backbone"):
        getattr(model, name).blocks.register_forward_pre_hook(
            lambda module, args, name=name: seen.setdefault(name, args[0].detach().clone())
        )
    views = _views()
    torch.manual_seed(3)
    model.training_step({"views": views}, 0)
    torch.manual_seed(3)  # the same draw from torch's global generator: the same masks
    masks = [model.draw_masks(view) for view in views]
    # block masks of 40% of 16 patches: at most 6 each, never none
    assert all(((mask.sum(1) > 0) & (mask.sum(1) <= 6)).all() for mask in masks)
    with torch.no_grad():
        patches, position = patch_embeddings(model.backbone, torch.cat(views))
    mask = torch.cat(masks)
    student = seen["backbone"][:, 1:]
    torch.testing.assert_close(
        student[mask], (model.mask_token + position[0, 1:])[mask.nonzero()[:, 1]]
    )
    torch.testing.assert_close(student[~mask], (patches + position[:, 1:])[~mask])
    torch.testing.assert_close(seen["teacher_backbone"][:, 1:], patches + position[:, 1:])


def test_loss_is_dino_on_cls_plus_the_patch_loss_on_masked_tokens_of_the_same_crop():
    model = _tiny_ibot(mask_probability=1.0, patch_loss_weight=0.5)
    views = _views(small=2)
    torch.manual_seed(4)
    loss = model.training_step({"views": views}, 0)["loss"]
    torch.manual_seed(4)
    masks = [model.draw_masks(view) for view in views[:2]]
    with torch.no_grad():
        tokens = model.tokens(model.backbone, torch.cat(views[:2]), torch.cat(masks))
        cls, patches = model.head_outputs(model.backbone, model.head, None, tokens)
        local = model.head(model.backbone(torch.cat(views[2:])))
        teacher_cls, teacher_patches = model.teacher(views[:2])
    student_cls = [*cls.chunk(2), *local.chunk(2)]
    # epoch 0: both teacher temperatures at their warm-up start 0.04; centers still zero
    cls_loss = DINOLoss(24)(student_cls, teacher_cls, 0.04)
    patch_loss = (
        sum(
            masked_patch_distillation(s, F.softmax(t / 0.04, dim=-1), m, 0.1)
            for s, t, m in zip(patches.chunk(2), teacher_patches, masks, strict=True)
        )
        / 2
    )
    torch.testing.assert_close(loss, cls_loss + 0.5 * patch_loss)


def test_unmasked_crops_give_no_patch_loss():
    model = _tiny_ibot(mask_probability=0.0)
    logged = {}
    model.log_dict = lambda values, **options: logged.update(values)
    model.training_step({"views": _views()}, 0)
    # no masked token anywhere: the patch loss is exactly 0, the [CLS] loss is not
    assert logged["train/patch_loss"].item() == 0.0 and logged["train/cls_loss"].item() > 0
    # the patch center still follows the teacher
    model.patch_loss.commit()
    assert model.patch_loss.center.abs().sum() > 0


def test_separate_patch_head_and_its_teacher_copy_and_frozen_last_layers():
    model = _tiny_ibot(shared_head=False, mask_probability=1.0)
    assert model.patch_head is not None and model.teacher_patch_head is not None
    assert not any(p.requires_grad for p in model.teacher_patch_head.parameters())
    loss = model.training_step({"views": _views()}, 0)["loss"]
    loss.backward()
    assert model.patch_head.mlp[0].weight.grad.abs().sum() > 0
    model.on_after_backward()  # epoch 0 < freeze_last_layer_epochs
    assert model.head.last_layer.weight.grad is None
    assert model.patch_head.last_layer.weight.grad is None


def test_refuses_a_resnet_backbone_and_bad_mask_options():
    with pytest.raises(RotauxError, match="iBOT masks patch tokens and needs a ViT backbone"):
        IBOT(backbone=ResNet(width=8, cifar_stem=True))
    with pytest.raises(RotauxError, match="mask_ratio_range"):
        _tiny_ibot(mask_ratio_range=(0.5, 0.2))


def test_print_config_lists_every_constructor_option(capsys):
    options = printed_model_options(capsys, MODEL, IBOT)
    assert options["num_prototypes"] == 8192 and options["shared_head"] is True
    assert options["mask_ratio_range"] == [0.1, 0.5] or options["mask_ratio_range"] == (0.1, 0.5)
