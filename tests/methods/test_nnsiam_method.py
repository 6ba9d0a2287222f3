import pytest
import torch
import torch.nn.functional as F
from cli_utils import fit_tiny, printed_model_options, read_metrics
from ddp import run_distributed

from rotaux.backbones import ResNet
from rotaux.losses.nnsiam import nnsiam_loss
from rotaux.methods.nnsiam import NNSiam

MODEL = "rotaux.methods.nnsiam.NNSiam"
SMALL = [
    "--model.proj_hidden_dim", "32",
    "--model.proj_output_dim", "16",
    "--model.pred_hidden_dim", "32",
    "--model.rotation_hidden_dim", "16",
    "--model.queue_size", "64",
    "--trainer.log_every_n_steps", "1",
]  # fmt: skip

pytestmark = pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")


def _tiny_nnsiam(queue_size: int = 6) -> NNSiam:
    torch.manual_seed(0)
    return NNSiam(
        backbone=ResNet(width=8, cifar_stem=True),
        proj_hidden_dim=16,
        proj_output_dim=8,
        pred_hidden_dim=16,
        queue_size=queue_size,
        rotation_weight=0,
        channels_last=False,
    )


def test_nnsiam_fits_and_keeps_its_support_set_in_the_checkpoint(tmp_path):
    run = fit_tiny(tmp_path, MODEL, *SMALL)
    logged = set().union(*read_metrics(run))
    assert {"train/loss", "train/ssl_loss", "train/rot_loss", "val/linear_top1"} <= logged
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert int(state["support_set.pointer"]) == 48 and int(state["support_set.filled"]) == 48


def test_print_config_lists_every_constructor_option(capsys):
    options = printed_model_options(capsys, MODEL, NNSiam)
    # solo-learn's nnsiam.yaml: a 4096-wide predictor (SimSiam's is 512), SGD 0.5
    assert options["pred_hidden_dim"] == 4096 and options["queue_size"] == 65536
    assert options["optimizer"]["name"] == "sgd" and options["optimizer"]["lr"] == 0.5


def test_predictor_keeps_simsiams_fixed_learning_rate():
    model = _tiny_nnsiam()
    groups = model.parameter_groups()
    fixed = {name for group in groups if group.fixed_lr for name, _ in group.parameters}
    assert fixed and all(name.startswith("predictor.") for name in fixed)


def test_predictions_match_neighbours_of_the_projections_before_the_push():
    model = _tiny_nnsiam()
    views = [torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16)]
    with torch.no_grad():
        _, projection_1, prediction_1 = model.embed(views[0])
        _, projection_2, prediction_2 = model.embed(views[1])
    unit_1, unit_2 = F.normalize(projection_1, dim=1), F.normalize(projection_2, dim=1)
    support = torch.cat([unit_1, -unit_2[:2]])
    model.support_set.rows.copy_(support)
    neighbours_2 = support[(unit_2 @ support.T).argmax(dim=1)]
    expected = nnsiam_loss(prediction_1, prediction_2, unit_1, neighbours_2)
    loss = model.training_step({"views": views}, 0)["loss"]
    torch.testing.assert_close(loss, expected)
    model.support_set.commit()  # what the optimizer step does in training (rotaux.staging)
    torch.testing.assert_close(model.support_set.rows[:4], unit_1)


def _step_on_rank(rank: int, world_size: int, views: list) -> torch.Tensor:
    model = _tiny_nnsiam(queue_size=16).eval()  # eval: BatchNorm per sample, no batch mixing
    model.training_step({"views": [view.chunk(world_size)[rank] for view in views]}, 0)
    model.support_set.commit()
    return model.support_set.rows.clone()


def test_support_set_on_two_ranks_matches_one_process_with_the_whole_batch():
    generator = torch.Generator().manual_seed(1)
    views = [torch.randn(8, 3, 16, 16, generator=generator) for _ in range(2)]
    ranks = run_distributed(_step_on_rank, views)
    single = _step_on_rank(0, 1, views)
    for rows in ranks:
        torch.testing.assert_close(rows, single)
