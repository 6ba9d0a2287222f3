"""The contract every registered method keeps, on every backbone family: a training step with
the rotation auxiliary on and off, target networks that never see rotated images, bf16 close to
fp32, exact resume, an export that loads into the backbone's own library, and linear and kNN
evaluation of the exported weights. The methods come from the registry, so a new method is
covered without touching this file."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from lightning import Callback, Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from tiny import FAMILIES, build, case_id, cases

from rotaux.callbacks.knn import knn_class_scores
from rotaux.data import SSLDataModule, Synthetic
from rotaux.eval.features import extract_features
from rotaux.eval.linear import LinearEval
from rotaux.export import WEIGHTS_FILE, export_backbone, load_exported_backbone

# the steps of the exported-weights check run without a Trainer
pytestmark = pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")

DATA = Synthetic(size=16, classes=4, val_fraction=0.5)
CPU = torch.device("cpu")
# bf16 rounds every matrix product's operands to 8 significant bits (0.2% each); SimSiam's
# negative cosine starts near 0 (absolute error); NNCLR's positive is an arg-max that rounding
# can flip; Barlow Twins sums the squares of D^2 correlations of rounded projections (1.0% on the
# ViT at the first step, measured); NNSiam's and All4One's neighbours are arg-max / top-k picks
# too (1-2 of 16 flipped on the ResNet, measured: NNSiam's cosine loss moves by 0.034, All4One's
# by 1.3%); W-MSE whitens groups of 8 embeddings in 4 dimensions, which magnifies the rounding
# (1.1% on the ResNet, measured)
BF16_TOLERANCE = {
    "simsiam": {"abs": 2e-2},
    "nnclr": {"rel": 5e-2},
    "barlow_twins": {"rel": 2e-2},
    "nnsiam": {"abs": 5e-2},
    "all4one": {"rel": 5e-2},
    "wmse": {"rel": 2e-2},
}


class StepRecorder(Callback):
    """Per training step: the logged losses, the rotated batch, and what every momentum target
    and the online backbone were given."""

    def __init__(self) -> None:
        self.losses: list[dict[str, float]] = []
        self.rotated: list[torch.Tensor] = []
        self.target_inputs: list[torch.Tensor] = []
        self.online_inputs: list[torch.Tensor] = []

    def on_train_start(self, trainer: Trainer, pl_module) -> None:
        for _, target in getattr(pl_module, "_momentum_pairs", []):
            target.register_forward_pre_hook(self._record(self.target_inputs))
        pl_module.backbone.register_forward_pre_hook(self._record(self.online_inputs))

    @staticmethod
    def _record(store: list[torch.Tensor]):
        def hook(module, args) -> None:
            if args and isinstance(args[0], torch.Tensor) and args[0].dim() == 4:
                store.append(args[0].detach().clone())

        return hook

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if "rotation" in batch:
            self.rotated.append(batch["rotation"].detach().clone())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        metrics = trainer.callback_metrics
        self.losses.append({name: float(value) for name, value in metrics.items()})


def fit(
    model,
    run_dir: Path,
    max_steps: int,
    precision: str = "32-true",
    ckpt_path: Path | None = None,
    callbacks: tuple[Callback, ...] = (),
) -> Trainer:
    seed_everything(0)
    trainer = Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=max_steps,
        precision=precision,
        deterministic=True,
        logger=False,
        default_root_dir=run_dir,
        callbacks=list(callbacks),
        enable_checkpointing=any(isinstance(each, ModelCheckpoint) for each in callbacks),
        limit_val_batches=0,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    data = SSLDataModule(DATA, batch_size=8, num_workers=0)
    trainer.fit(model, data, ckpt_path=ckpt_path)
    return trainer


@pytest.fixture(scope="module", params=cases(), ids=case_id)
def trained(request, tmp_path_factory):
    """A method trained for two fp32 steps with the rotation auxiliary, with a checkpoint after
    each step, and what its steps recorded."""
    entry, family = request.param
    run_dir = tmp_path_factory.mktemp(case_id(request.param))
    model = build(entry, family)
    recorder = StepRecorder()
    every_step = ModelCheckpoint(
        dirpath=run_dir, filename="{step}", every_n_train_steps=1, save_top_k=-1
    )
    fit(model, run_dir, max_steps=2, callbacks=(recorder, every_step))
    return entry, family, model, recorder, run_dir


def test_rotation_loss_is_logged_and_added(trained):
    entry, _, model, recorder, _ = trained
    assert model.uses_rotation
    assert len(recorder.losses) == 2
    for step in recorder.losses:
        assert {"train/rot_loss", "train/rot_acc"} <= step.keys()
        # a positive cross-entropy, weighted by rotation_weight, on top of the method's loss
        expected = step["train/ssl_loss"] + model.rotation_weight * step["train/rot_loss"]
        assert step["train/loss"] == pytest.approx(expected, rel=1e-5, abs=1e-6)
        assert step["train/rot_loss"] > 0
    assert all(math.isfinite(value) for step in recorder.losses for value in step.values())


def test_baseline_builds_no_head_and_gets_no_rotated_images(trained, tmp_path):
    entry, family, _, _, _ = trained
    model = build(entry, family, rotation_weight=0.0)
    assert model.rotation_head is None and model.rotation_input() is None
    recorder = StepRecorder()
    fit(model, tmp_path, max_steps=1, callbacks=(recorder,))
    assert recorder.rotated == []
    (step,) = recorder.losses
    assert "train/rot_loss" not in step
    assert step["train/loss"] == step["train/ssl_loss"]


def test_targets_never_see_rotated_images_and_the_online_backbone_does(trained):
    _, _, model, recorder, _ = trained
    # the rotated (k > 0) copies of every step: a quarter of the rotated batch each
    rotated = [chunk for batch in recorder.rotated for chunk in batch.chunk(4)[1:] if chunk.numel()]
    assert rotated
    for seen in recorder.target_inputs:
        for chunk in rotated:
            assert not (seen.shape == chunk.shape and torch.equal(seen, chunk))
    assert any(
        torch.equal(seen, batch) for seen in recorder.online_inputs for batch in recorder.rotated
    )


def test_bf16_mixed_first_step_matches_fp32(trained, tmp_path):
    entry, family, _, recorder, _ = trained
    model = build(entry, family)
    bf16 = StepRecorder()
    fit(model, tmp_path, max_steps=1, precision="bf16-mixed", callbacks=(bf16,))
    tolerance = BF16_TOLERANCE.get(entry.name, {"rel": 1e-2})
    for name in ("train/loss", "train/ssl_loss"):
        assert bf16.losses[0][name] == pytest.approx(recorder.losses[0][name], **tolerance)
    # mixed, not bf16-true: the weights the optimizer updates stay fp32
    assert {param.dtype for param in model.parameters()} == {torch.float32}


def test_resume_from_the_first_step_ends_bit_identical(trained, tmp_path):
    entry, family, model, _, run_dir = trained
    resumed = build(entry, family, seed=1)
    fit(resumed, tmp_path, max_steps=2, ckpt_path=run_dir / "step=1.ckpt")
    straight, again = model.state_dict(), resumed.state_dict()
    assert straight.keys() == again.keys()
    for key in straight:
        assert torch.equal(straight[key], again[key]), key


def test_export_loads_into_the_source_library_and_evaluates(trained, tmp_path):
    _, family, model, _, run_dir = trained
    exported = export_backbone(run_dir / "step=2.ckpt", tmp_path / "export")
    spec = FAMILIES[family]
    network = spec.build_in_source_library()
    network.load_state_dict(torch.load(exported / WEIGHTS_FILE, weights_only=True), strict=True)
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(network.eval()(images), model.backbone.eval()(images))

    # kNN on the exported backbone's features: a valid accuracy, identical to the model's own
    data = SSLDataModule(DATA, batch_size=8, num_workers=0)
    data.setup("fit")

    def knn_accuracy(backbone: torch.nn.Module) -> float:
        backbone.eval()
        bank = extract_features(
            backbone, data.eval_train_dataset(), data.normalize, model.num_features, CPU, 8, 0
        )
        queries = extract_features(
            backbone, data.val_dataloader().dataset, data.normalize, model.num_features, CPU, 8, 0
        )
        scores = knn_class_scores(queries[0], *bank, num_classes=data.num_classes, k=3)
        return (scores.argmax(dim=1) == queries[1]).float().mean().item()

    accuracy = knn_accuracy(load_exported_backbone(exported))
    assert 0.0 <= accuracy <= 1.0
    assert accuracy == knn_accuracy(model.backbone)

    # LinearEval of the exported folder and of the checkpoint: the same frozen backbone
    results = []
    for source in (exported, run_dir / "step=2.ckpt"):
        evaluation = LinearEval(checkpoint=str(source), precompute_features=True)
        seed_everything(0)
        Trainer(
            accelerator="cpu",
            max_epochs=2,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        ).fit(evaluation, SSLDataModule(DATA, batch_size=8, num_workers=0))
        results.append(evaluation.classifier.weight.detach().clone())
    torch.testing.assert_close(results[0], results[1], rtol=0, atol=0)
