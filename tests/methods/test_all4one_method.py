import pytest
import torch
from cli_utils import fit_tiny, printed_model_options, read_metrics

from rotaux.backbones import ResNet
from rotaux.errors import RotauxError
from rotaux.losses.all4one import (
    centroid_contrast_loss,
    feature_contrast_loss,
    nearest_neighbour_sets,
    neighbour_slot_encoding,
)
from rotaux.losses.nnclr import nnclr_loss
from rotaux.methods.all4one import All4One

MODEL = "rotaux.methods.all4one.All4One"
SMALL = [
    "--model.proj_hidden_dim", "32",
    "--model.proj_output_dim", "16",
    "--model.pred_hidden_dim", "32",
    "--model.rotation_hidden_dim", "16",
    "--model.queue_size", "64",
    "--model.transformer_heads", "4",
    "--trainer.log_every_n_steps", "1",
]  # fmt: skip

pytestmark = pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")


def _tiny_all4one(**overrides) -> All4One:
    torch.manual_seed(0)
    options = dict(
        backbone=ResNet(width=8, cifar_stem=True),
        proj_hidden_dim=16,
        proj_output_dim=8,
        pred_hidden_dim=16,
        queue_size=12,
        num_neighbours=3,
        transformer_heads=2,
        transformer_dropout=0.0,
        rotation_weight=0,
        channels_last=False,
    )
    return All4One(**(options | overrides))


def test_all4one_fits_logs_its_three_objectives_and_keeps_its_support_set(tmp_path):
    run = fit_tiny(tmp_path, MODEL, *SMALL)
    logged = set().union(*read_metrics(run))
    assert {"train/neighbour_loss", "train/centroid_loss", "train/feature_loss"} <= logged
    assert {"train/loss", "train/rot_loss", "val/linear_top1"} <= logged
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert int(state["support_set.pointer"]) == 48
    # the slot encoding is rebuilt from the options, not stored
    assert "slot_encoding" not in state


def test_print_config_lists_every_constructor_option(capsys):
    options = printed_model_options(capsys, MODEL, All4One)
    assert options["queue_size"] == 98304 and options["num_neighbours"] == 5


def test_transformer_trains_at_a_tenth_of_the_learning_rate():
    model = _tiny_all4one()
    groups = model.parameter_groups()
    scaled = [group for group in groups if group.lr_scale != 1.0]
    assert len(scaled) == 1 and scaled[0].lr_scale == 0.1
    names = {name for name, _ in scaled[0].parameters}
    assert names == {
        name for name, _ in model.named_parameters() if name.startswith("transformer.")
    }
    assert sum(len(group.parameters) for group in groups) == len(list(model.parameters()))


def test_refuses_heads_that_do_not_divide_the_projection():
    with pytest.raises(RotauxError, match="transformer_heads .3. must divide proj_output_dim"):
        _tiny_all4one(transformer_heads=3)


def test_loss_combines_neighbour_centroid_and_feature_contrast_as_the_official_code():
    model = _tiny_all4one()
    views = [torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16)]
    support = model.support_set.rows.clone()
    with torch.no_grad():
        projection_1 = model.projector(model.backbone(views[0]))
        projection_2 = model.projector(model.backbone(views[1]))
        target_1, target_2 = model.target(views[0]), model.target(views[1])
        sets_1 = nearest_neighbour_sets(target_1, support, 3)
        sets_2 = nearest_neighbour_sets(target_2, support, 3)
        encoding = neighbour_slot_encoding(3, 8)

        def centroid(sequence: torch.Tensor) -> torch.Tensor:
            return model.transformer(sequence + encoding)[:, 0]

        def shifted(projection: torch.Tensor, sets: torch.Tensor) -> torch.Tensor:
            # the second predictor's output in slot 0, the two nearest neighbours after it
            prediction = model.centroid_predictor(projection)
            return torch.stack([prediction, sets[:, 0], sets[:, 1]], dim=1)

        neighbour = (
            nnclr_loss(sets_1[:, 0], model.predictor(projection_2), 0.2)
            + nnclr_loss(sets_2[:, 0], model.predictor(projection_1), 0.2)
        ) / 2
        centroids = (
            centroid_contrast_loss(centroid(sets_1), centroid(shifted(projection_2, sets_2)), 0.1)
            + centroid_contrast_loss(centroid(sets_2), centroid(shifted(projection_1, sets_1)), 0.1)
        ) / 2
        feature = feature_contrast_loss(target_1, projection_1, target_2, projection_2)
    expected = 0.5 * neighbour + 0.5 * centroids + 5.0 * feature
    loss = model.training_step({"views": views}, 0)["loss"]
    torch.testing.assert_close(loss, expected)
    model.support_set.commit()  # what the optimizer step does in training (rotaux.staging)
    torch.testing.assert_close(model.support_set.rows[:4], target_1)
