"""bf16 mixed precision trains every method + rotation with the fp32 loss values, to bf16's
resolution."""

import math

import pytest
import torch
from lightning import Callback, Trainer, seed_everything

from rotaux import methods
from rotaux.data import SSLDataModule
from rotaux.methods import BYOL

OTHER_METHODS = [
    "SimCLR",
    "SimSiam",
    "MoCoV2Plus",
    "BarlowTwins",
    "VICReg",
    "SwAV",
    "DINO",
    "NNCLR",
]


class Losses(Callback):
    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        metrics = trainer.callback_metrics
        self.rows.append({name: float(metrics[name]) for name in ("train/loss", "train/ssl_loss")})


def train(precision: str, method: str = "BYOL") -> tuple[BYOL, list[dict[str, float]]]:
    seed_everything(0)
    if method == "BYOL":
        model = BYOL(
            backbone_width=8,
            cifar_stem=True,
            proj_hidden_dim=64,
            proj_output_dim=32,
            pred_hidden_dim=64,
            rotation_hidden_dim=32,
        )
    else:
        model = getattr(methods, method)(backbone_width=8, cifar_stem=True, rotation_hidden_dim=32)
    data = SSLDataModule("synthetic", synthetic_size=48, batch_size=16, num_workers=0)
    losses = Losses()
    trainer = Trainer(
        accelerator="cpu",
        precision=precision,
        max_steps=3,
        callbacks=[losses],
        logger=False,
        enable_checkpointing=False,
        limit_val_batches=0,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, data)
    return model, losses.rows


def test_bf16_mixed_matches_fp32_at_the_first_step_and_stays_finite():
    model, bf16 = train("bf16-mixed")
    _, fp32 = train("32-true")
    assert len(bf16) == 3
    assert all(math.isfinite(value) for row in bf16 for value in row.values())
    # the first step sees the same weights and the same batch (seeded order, augmentations and
    # rotations). Autocast rounds the operands of every convolution and linear layer to bf16
    # (8 significant bits: up to 2^-9 = 0.2% each), the losses themselves run in fp32; over
    # seeds 0-3 the two losses differ by at most 0.31%. 1% is 2.5 bf16 ulps at the loss's scale.
    for name in ("train/loss", "train/ssl_loss"):
        assert bf16[0][name] == pytest.approx(fp32[0][name], rel=1e-2)
    # mixed, not bf16-true: the weights the optimizer updates stay fp32
    assert {param.dtype for param in model.parameters()} == {torch.float32}


@pytest.mark.parametrize("method", OTHER_METHODS)
def test_every_method_in_bf16_mixed_matches_fp32_at_the_first_step(method):
    _, bf16 = train("bf16-mixed", method)
    _, fp32 = train("32-true", method)
    assert all(math.isfinite(value) for row in bf16 for value in row.values())
    # SimSiam's negative cosine starts near 0, so its error is absolute (about 1e-3 from the
    # bf16 features); NNCLR's positive is an arg-max over the support set, which bf16 rounding
    # can flip to another neighbour for a few samples, a discontinuous change of a few percent
    tolerance = {"SimSiam": {"abs": 1e-2}, "NNCLR": {"rel": 5e-2}}.get(method, {"rel": 1e-2})
    for name in ("train/loss", "train/ssl_loss"):
        assert bf16[0][name] == pytest.approx(fp32[0][name], **tolerance)
