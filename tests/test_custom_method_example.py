"""examples/custom_method.py keeps running: its method subclasses BYOL in user code and trains
through `rotaux fit` and through a plain lightning.Trainer script."""

from pathlib import Path

import lightning
import pytest
import torch
from cli_utils import SMALL_HEADS, fit_tiny, read_metrics

from rotaux.methods import METHODS

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture
def custom_method(monkeypatch):
    """The example module, importable as ``PYTHONPATH=examples`` makes it."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    import custom_method

    return custom_method


def test_the_cli_trains_the_user_method_with_every_inherited_option(custom_method, tmp_path):
    run = fit_tiny(
        tmp_path,
        "custom_method.DeepProjectorBYOL",
        "--model.proj_num_layers", "3",
        "--model.pred_hidden_dim", "64",
        *SMALL_HEADS,
    )  # fmt: skip
    logged = set().union(*read_metrics(run))
    assert {"train/ssl_loss", "train/rot_loss", "val/linear_top1"} <= logged
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    projector = [key for key in checkpoint["state_dict"] if key.startswith("projector.")]
    # three linear layers (indices 0, 3, 6 of Linear-BN-ReLU blocks), where BYOL has two
    assert {"projector.0.weight", "projector.3.weight", "projector.6.weight"} <= set(projector)
    # a user's method is not added to rotaux's registry unless it registers itself
    assert "deep_projector_byol" not in METHODS


def test_the_plain_trainer_script_builds_and_steps_the_user_method(
    custom_method, monkeypatch, tmp_path
):
    # the script as written, its Trainer cut to one training step and no validation
    trainer_class, trainers = lightning.Trainer, []

    def one_step_trainer(**options):
        trainers.append(trainer_class(**options, max_steps=1, limit_val_batches=0, logger=False))
        return trainers[-1]

    monkeypatch.setattr(lightning, "Trainer", one_step_trainer)
    monkeypatch.chdir(tmp_path)
    custom_method.main()
    model = trainers[0].lightning_module
    assert len([m for m in model.projector if isinstance(m, torch.nn.Linear)]) == 3
    assert trainers[0].global_step == 1
