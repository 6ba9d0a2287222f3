import pytest
import torch
import torch.nn.functional as F
from cli_utils import fit_tiny, printed_model_options, read_metrics
from ddp import run_distributed

from rotaux.backbones import ResNet
from rotaux.losses.nnbyol import nnbyol_loss
from rotaux.methods.nnbyol import NNBYOL

MODEL = "rotaux.methods.nnbyol.NNBYOL"
SMALL = [
    "--model.proj_hidden_dim", "32",
    "--model.proj_output_dim", "16",
    "--model.pred_hidden_dim", "32",
    "--model.rotation_hidden_dim", "16",
    "--model.queue_size", "64",
    "--trainer.log_every_n_steps", "1",
]  # fmt: skip

pytestmark = pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")


def _tiny_nnbyol(queue_size: int = 6) -> NNBYOL:
    torch.manual_seed(0)
    return NNBYOL(
        backbone=ResNet(width=8, cifar_stem=True),
        proj_hidden_dim=16,
        proj_output_dim=8,
        pred_hidden_dim=16,
        queue_size=queue_size,
        rotation_weight=0,
        channels_last=False,
    )


def test_nnbyol_fits_and_keeps_its_support_set_in_the_checkpoint(tmp_path):
    run = fit_tiny(tmp_path, MODEL, *SMALL)
    logged = set().union(*read_metrics(run))
    assert {"train/loss", "train/ssl_loss", "train/rot_loss", "val/linear_top1"} <= logged
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    # 3 steps of 16 target projections went into the support set of 64, as unit vectors
    assert int(state["support_set.pointer"]) == 48 and int(state["support_set.filled"]) == 48
    norms = state["support_set.rows"][:48].norm(dim=1)
    torch.testing.assert_close(norms, torch.ones(48))


def test_print_config_lists_every_constructor_option(capsys):
    options = printed_model_options(capsys, MODEL, NNBYOL)
    assert options["queue_size"] == 65536 and options["pred_hidden_dim"] == 4096


def test_targets_regress_onto_neighbours_of_the_target_projections_before_the_push():
    model = _tiny_nnbyol()
    # a target network that differs from the online one, as after EMA steps
    with torch.no_grad():
        for param in model.target_projector.parameters():
            param.add_(0.3 * torch.randn_like(param))
    views = [torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16)]
    with torch.no_grad():
        _, prediction_1 = model.online(views[0])
        _, prediction_2 = model.online(views[1])
        target_1 = F.normalize(model.target(views[0]), dim=1)
        target_2 = F.normalize(model.target(views[1]), dim=1)
    # the support set holds view 2's targets and two other rows: view 2 finds itself
    support = torch.cat([target_2, F.normalize(torch.randn(2, 8), dim=1)])
    model.support_set.rows.copy_(support)
    neighbours_1 = support[(target_1 @ support.T).argmax(dim=1)]
    expected = nnbyol_loss(prediction_1, prediction_2, neighbours_1, target_2)
    loss = model.training_step({"views": views}, 0)["loss"]
    torch.testing.assert_close(loss, expected)
    model.support_set.commit()  # what the optimizer step does in training (rotaux.staging)
    # the first view's normalised targets (not its online projections) joined the support set
    torch.testing.assert_close(model.support_set.rows[:4], target_1)
    torch.testing.assert_close(model.support_set.rows[4:], support[4:])


def _step_on_rank(rank: int, world_size: int, views: list) -> torch.Tensor:
    model = _tiny_nnbyol(queue_size=16).eval()  # eval: BatchNorm per sample, no batch mixing
    local = [view.chunk(world_size)[rank] for view in views]
    model.training_step({"views": local}, 0)
    model.support_set.commit()
    return model.support_set.rows.clone()


def test_support_set_on_two_ranks_matches_one_process_with_the_whole_batch():
    generator = torch.Generator().manual_seed(1)
    views = [torch.randn(8, 3, 16, 16, generator=generator) for _ in range(2)]
    ranks = run_distributed(_step_on_rank, views)
    single = _step_on_rank(0, 1, views)
    for rows in ranks:
        torch.testing.assert_close(rows, single)
