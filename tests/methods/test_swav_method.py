import json

import pytest
import torch
import torch.nn.functional as F
from cli_utils import fit_tiny, printed_model_options, read_metrics

from rotaux.backbones import ResNet
from rotaux.errors import RotauxError
from rotaux.losses.swav import sinkhorn
from rotaux.methods.swav import SwAV

MODEL = "rotaux.methods.swav.SwAV"
SMALL = ["--model.proj_hidden_dim", "32", "--model.num_prototypes", "20"]
# 2 large crops then 2 small ones of 16 px
MULTI_CROP = json.dumps(
    [
        {"crop_size": 32, "num_crops": 2},
        {"crop_size": 16, "crop_scale": [0.05, 0.3], "num_crops": 2},
    ]
)
ROTATION_METRICS = {"train/rot_loss", "train/rot_acc"}


def _tiny_swav(**overrides) -> SwAV:
    torch.manual_seed(0)
    options = dict(
        backbone=ResNet(width=8, cifar_stem=True),
        proj_hidden_dim=16,
        proj_output_dim=8,
        num_prototypes=5,
        queue_size=6,
        queue_start_epoch=0,
        rotation_weight=0,
    )
    return SwAV(**(options | overrides))


def test_swav_fits_with_multi_crop_rotation_and_a_queue_kept_in_the_checkpoint(tmp_path):
    run = fit_tiny(
        tmp_path,
        MODEL,
        *SMALL,
        "--model.queue_size",
        "32",
        "--model.queue_start_epoch",
        "0",
        "--data.augmentations",
        MULTI_CROP,
        "--trainer.log_every_n_steps",
        "1",
    )
    logged = set().union(*read_metrics(run))
    assert {"train/loss", "train/ssl_loss", "val/linear_top1"} | ROTATION_METRICS <= logged
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    # 3 steps of 16 embeddings per large crop went into queues of 32 (full after step 2)
    for queue in ("queues.0", "queues.1"):
        assert int(state[f"{queue}.pointer"]) == 16 and int(state[f"{queue}.filled"]) == 32
    assert "queues.2.rows" not in state  # only the large crops are queued


def test_swav_without_rotation_and_queue_logs_no_rotation_metrics(tmp_path):
    run = fit_tiny(
        tmp_path,
        MODEL,
        *SMALL,
        "--model.queue_size",
        "0",
        "--model.rotation_weight",
        "0",
        "--trainer.log_every_n_steps",
        "1",
    )
    logged = set().union(*read_metrics(run))
    assert {"train/loss", "train/ssl_loss", "val/linear_top1"} <= logged
    assert not logged & ROTATION_METRICS
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert not any(key.startswith(("rotation_head.", "queues.")) for key in state)


def test_print_config_lists_every_constructor_option(capsys):
    printed_model_options(capsys, MODEL, SwAV)


def test_codes_use_the_queue_once_it_is_full_and_its_start_epoch_is_reached():
    model = _tiny_swav()
    scores = torch.randn(4, 5).tanh()
    torch.testing.assert_close(model.codes(0, scores), sinkhorn(scores))  # queue still empty
    model.queues[0].push(F.normalize(torch.randn(6, 8), dim=1))
    model.queues[0].commit()
    queued_scores = model.prototypes(model.queues[0].rows)
    with_queue = sinkhorn(torch.cat([scores, queued_scores]))[:4]
    torch.testing.assert_close(model.codes(0, scores), with_queue)
    assert not torch.allclose(with_queue, sinkhorn(scores))
    torch.testing.assert_close(model.codes(1, scores), sinkhorn(scores))  # crop 1's queue is empty
    model.queue_start_epoch = 1
    torch.testing.assert_close(model.codes(0, scores), sinkhorn(scores))


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
@pytest.mark.parametrize("freeze_epochs", [0, 1])
def test_prototypes_are_normalised_before_each_step_and_frozen_in_the_first_epochs(freeze_epochs):
    model = _tiny_swav(freeze_prototypes_epochs=freeze_epochs)
    with torch.no_grad():
        model.prototypes.weight.mul_(3.0)
    model.on_train_batch_start({}, 0)
    torch.testing.assert_close(model.prototypes.weight.norm(dim=1), torch.ones(5))
    views = [torch.randn(4, 3, 16, 16) for _ in range(2)] + [torch.randn(4, 3, 8, 8)]
    model.training_step({"views": views}, 0)["loss"].backward()
    model.on_after_backward()  # current_epoch is 0
    assert (model.prototypes.weight.grad is None) is (freeze_epochs == 1)
    assert model.projector[0].weight.grad is not None


def test_training_step_refuses_fewer_views_than_large_crops():
    model = _tiny_swav(num_large_crops=3)
    with pytest.raises(RotauxError, match="num_large_crops"):
        model.training_step({"views": [torch.randn(4, 3, 16, 16)] * 2}, 0)


def test_prototype_scores_are_float32_under_autocast():
    model = _tiny_swav()
    embeddings = F.normalize(torch.randn(4, 8), dim=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        scores = model.prototypes(embeddings)
    assert scores.dtype == torch.float32
    torch.testing.assert_close(scores, embeddings @ model.prototypes.weight.T)
