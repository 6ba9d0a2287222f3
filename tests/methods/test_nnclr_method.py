import pytest
import torch
import torch.nn.functional as F
from cli_utils import fit_tiny, printed_model_options, read_metrics

from rotaux.backbones import ResNet
from rotaux.losses.nnclr import nnclr_loss
from rotaux.methods.nnclr import NNCLR

MODEL = "rotaux.methods.nnclr.NNCLR"
SMALL = [
    "--model.proj_hidden_dim",
    "32",
    "--model.pred_hidden_dim",
    "32",
    "--model.queue_size",
    "64",
]
ROTATION_METRICS = {"train/rot_loss", "train/rot_acc"}


@pytest.mark.parametrize("rotation", [True, False])
def test_nnclr_fits_and_keeps_its_support_set_in_the_checkpoint(tmp_path, rotation):
    extra = [] if rotation else ["--model.rotation_weight", "0"]
    run = fit_tiny(tmp_path, MODEL, *SMALL, "--trainer.log_every_n_steps", "1", *extra)
    logged = set().union(*read_metrics(run))
    assert {"train/loss", "train/ssl_loss", "val/linear_top1"} <= logged
    assert logged & ROTATION_METRICS == (ROTATION_METRICS if rotation else set())
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert any(key.startswith("rotation_head.") for key in state) is rotation
    # 3 steps of 16 projections went into the support set of 64
    assert int(state["support_set.pointer"]) == 48 and int(state["support_set.filled"]) == 48


def test_print_config_lists_every_constructor_option(capsys):
    printed_model_options(capsys, MODEL, NNCLR)


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
def test_positives_are_nearest_neighbours_from_the_support_set_before_the_push():
    torch.manual_seed(0)
    model = NNCLR(
        backbone=ResNet(width=8, cifar_stem=True),
        proj_hidden_dim=16,
        proj_output_dim=8,
        pred_hidden_dim=16,
        queue_size=6,
        rotation_weight=0,
    )
    views = [torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16)]
    # a support set of the (sign-flipped) projections of this very batch: every projection's
    # nearest neighbour is a known row, and the batch's own rows join only after the loss
    with torch.no_grad():
        _, projection_1, prediction_1 = model.online(views[0])
        _, projection_2, prediction_2 = model.online(views[1])
    support = F.normalize(torch.cat([projection_2, -projection_1[:2]]), dim=1)
    model.support_set.rows.copy_(support)
    similarity_1 = F.normalize(projection_1, dim=1) @ support.T
    similarity_2 = F.normalize(projection_2, dim=1) @ support.T
    neighbours_1 = support[similarity_1.argmax(dim=1)]
    neighbours_2 = support[similarity_2.argmax(dim=1)]
    torch.testing.assert_close(neighbours_2, support[:4])  # each view-2 projection finds itself
    expected = (
        nnclr_loss(neighbours_1, prediction_2, 0.2) + nnclr_loss(neighbours_2, prediction_1, 0.2)
    ) / 2
    loss = model.training_step({"views": views}, 0)["loss"]
    torch.testing.assert_close(loss, expected)
    model.support_set.commit()  # what the optimizer step does in training (rotaux.staging)
    torch.testing.assert_close(model.support_set.rows[:4], F.normalize(projection_1, dim=1))
    torch.testing.assert_close(model.support_set.rows[4:], support[4:])
