import pytest
import torch
from cli_utils import printed_model_options
from lightning import Trainer

from rotaux.backbones import ResNet, ViT
from rotaux.data import SSLDataModule, Synthetic
from rotaux.data.transforms import ViewAugmentation
from rotaux.errors import RotauxError
from rotaux.losses.mae import mae_loss
from rotaux.methods.byol import BYOL
from rotaux.methods.mae import MAE, sincos_position_embedding
from rotaux.methods.masking import shuffle_keep_indices
from rotaux.methods.vit_tokens import encode, patch_embeddings, pooled

MODEL = "rotaux.methods.mae.MAE"
TINY_VIT = ViT(size="tiny", patch_size=8, image_size=32)

pytestmark = pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")


def _tiny_mae(**overrides) -> MAE:
    torch.manual_seed(0)
    options = dict(
        backbone=TINY_VIT,
        decoder_embed_dim=32,
        decoder_depth=1,
        decoder_num_heads=4,
        rotation_weight=0,
        channels_last=False,
    )
    return MAE(**(options | overrides))


@pytest.mark.parametrize("ratio, visible", [(0.75, 4), (0.5, 8), (0.3, 11)])
def test_the_encoder_sees_exactly_the_unmasked_share_of_the_patches(ratio, visible):
    model = _tiny_mae(mask_ratio=ratio)
    lengths = []
    model.backbone.blocks.register_forward_pre_hook(
        lambda module, args: lengths.append(args[0].shape[1])
    )
    model.training_step({"views": [torch.randn(3, 3, 32, 32)]}, 0)
    # 16 patches of 8 px at 32 px: int(16 * (1 - ratio)) of them plus the CLS token
    assert lengths == [1 + visible]


def test_loss_is_the_reconstruction_of_the_masked_patches_under_the_global_generator_draw():
    model = _tiny_mae()
    images = torch.randn(3, 3, 32, 32)
    torch.manual_seed(5)
    loss = model.training_step({"views": [images]}, 0)["loss"]
    # the same draw from torch's global generator (what checkpoints restore) gives the same mask
    torch.manual_seed(5)
    kept, mask = shuffle_keep_indices(3, 16, 4, images.device)
    with torch.no_grad():
        patches, position = patch_embeddings(model.backbone, images)
        visible = (patches + position[:, 1:]).gather(1, kept[..., None].expand(-1, -1, 192))
        tokens = encode(model.backbone, visible, position)
        predictions = model.decoder(tokens, kept, (4, 4))
    assert mask.sum(dim=1).tolist() == [12, 12, 12]
    torch.testing.assert_close(loss, mae_loss(images, predictions, mask, 8, norm_pix_loss=True))
    # a different draw masks other patches: another loss
    torch.manual_seed(6)
    assert model.training_step({"views": [images]}, 0)["loss"] != loss


def test_full_sequence_tokens_reproduce_the_backbone_forward():
    model = _tiny_mae().eval()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        patches, position = patch_embeddings(model.backbone, images)
        features = pooled(
            model.backbone, encode(model.backbone, patches + position[:, 1:], position)
        )
        torch.testing.assert_close(features, model.backbone(images))


def test_decoder_position_embedding_is_mae_sincos_with_an_empty_cls_slot():
    embedding = sincos_position_embedding(8, 2, 3)
    assert embedding.shape == (7, 8) and not embedding[0].any()
    # patch (row 1, col 2) is index 1 + 5: column 2 in the first half, row 1 in the second
    patch = embedding[6]
    torch.testing.assert_close(patch[:2], torch.sin(torch.tensor([2.0, 2.0 * 0.01])))
    torch.testing.assert_close(patch[2:4], torch.cos(torch.tensor([2.0, 2.0 * 0.01])))
    torch.testing.assert_close(patch[4:6], torch.sin(torch.tensor([1.0, 0.01])))


def test_refuses_a_resnet_backbone_with_a_clear_message():
    with pytest.raises(
        RotauxError, match="MAE masks patch tokens and needs a ViT backbone, got ResNet"
    ):
        MAE(backbone=ResNet(width=8, cifar_stem=True))
    with pytest.raises(RotauxError, match="decoder_embed_dim"):
        _tiny_mae(decoder_embed_dim=30)


def test_print_config_lists_every_constructor_option(capsys):
    options = printed_model_options(capsys, MODEL, MAE)
    assert options["mask_ratio"] == 0.75 and options["decoder_depth"] == 8
    assert options["optimizer"]["adam_beta2"] == 0.95


def _fit_one_step(model, tmp_path) -> Trainer:
    trainer = Trainer(
        accelerator="cpu",
        max_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        default_root_dir=tmp_path,
    )
    one_view = [ViewAugmentation(crop_size=32, color_jitter_prob=0.0, blur_prob=0.0)]
    data = SSLDataModule(
        Synthetic(size=8, classes=2), batch_size=4, num_workers=0, augmentations=one_view
    )
    trainer.fit(model, data)
    return trainer


def test_mae_trains_on_one_view_per_image_and_two_view_methods_refuse_it(tmp_path):
    trainer = _fit_one_step(_tiny_mae(rotation_weight=0.4, rotation_hidden_dim=16), tmp_path)
    assert trainer.global_step == 1
    assert torch.isfinite(trainer.callback_metrics["train/rot_loss"])
    byol = BYOL(backbone=ResNet(width=8, cifar_stem=True), proj_hidden_dim=16, pred_hidden_dim=16)
    with pytest.raises(RotauxError, match="BYOL needs at least 2 views per image"):
        _fit_one_step(byol, tmp_path)
