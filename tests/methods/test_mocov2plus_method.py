import pytest
import torch
from cli_utils import fit_tiny, printed_model_options, read_metrics

from rotaux.backbones import ResNet
from rotaux.losses.moco import moco_loss
from rotaux.methods.mocov2plus import MoCoV2Plus

MODEL = "rotaux.methods.mocov2plus.MoCoV2Plus"
SMALL = ["--model.proj_hidden_dim", "32", "--model.queue_size", "64"]
ROTATION_METRICS = {"train/rot_loss", "train/rot_acc"}


@pytest.mark.parametrize("rotation", [True, False])
def test_mocov2plus_fits_and_keeps_its_queues_in_the_checkpoint(tmp_path, rotation):
    extra = [] if rotation else ["--model.rotation_weight", "0"]
    run = fit_tiny(tmp_path, MODEL, *SMALL, "--trainer.log_every_n_steps", "1", *extra)
    logged = set().union(*read_metrics(run))
    assert {"train/loss", "train/ssl_loss", "train/ema_momentum", "val/linear_top1"} <= logged
    assert logged & ROTATION_METRICS == (ROTATION_METRICS if rotation else set())
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert any(key.startswith("rotation_head.") for key in state) is rotation
    for queue in ("queues.0", "queues.1"):
        # 3 steps of 16 keys went into each queue of 64
        assert int(state[f"{queue}.pointer"]) == 48 and state[f"{queue}.rows"].shape == (64, 256)


def test_print_config_lists_every_constructor_option(capsys):
    printed_model_options(capsys, MODEL, MoCoV2Plus)


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
def test_keys_of_a_step_join_the_queues_only_after_the_loss():
    torch.manual_seed(0)
    model = MoCoV2Plus(
        backbone=ResNet(width=8, cifar_stem=True),
        proj_hidden_dim=16,
        proj_output_dim=8,
        queue_size=6,
        rotation_weight=0,
    )
    views = [torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16)]
    old_queues = [queue.rows.clone() for queue in model.queues]
    with torch.no_grad():
        _, query_1 = model.query(views[0])
        _, query_2 = model.query(views[1])
        keys = [model.key(view) for view in views]
    expected = (
        moco_loss(query_1, keys[1], old_queues[1], 0.2)
        + moco_loss(query_2, keys[0], old_queues[0], 0.2)
    ) / 2
    loss = model.training_step({"views": views}, 0)["loss"]
    torch.testing.assert_close(loss, expected)
    for queue in model.queues:
        queue.commit()  # what the optimizer step does in training (rotaux.staging)
    for queue, key, old in zip(model.queues, keys, old_queues, strict=True):
        torch.testing.assert_close(queue.rows[:4], key)
        torch.testing.assert_close(queue.rows[4:], old[4:])
