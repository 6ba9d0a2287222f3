import copy

import pytest
import torch
from lightning import Callback, Trainer, seed_everything

from rotaux.backbones import ResNet
from rotaux.callbacks.divergence import DivergenceGuard, NonFiniteLossError
from rotaux.data import SSLDataModule, Synthetic
from rotaux.methods import BYOL, DINO, NNCLR, MoCoV2Plus


class Breaks(BYOL):
    """BYOL whose rotated images turn NaN at the global steps in ``nan_steps``: the rotation loss
    (not the BYOL loss) is NaN, and the backbone's BatchNorm statistics take NaN in the forward
    pass. At the steps in ``nan_gradient_steps`` the loss stays finite but gradients are NaN."""

    nan_steps: frozenset[int] = frozenset()
    nan_gradient_steps: frozenset[int] = frozenset()

    def training_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        if self.global_step in self.nan_steps:
            batch["rotation"] = batch["rotation"] * float("nan")
        output = super().training_step(batch, batch_idx)
        if self.global_step in self.nan_gradient_steps:
            # sqrt'(0) is infinite: the value added is 0, its gradient 0 * inf = NaN
            weight = next(self.predictor.parameters())
            output["loss"] = output["loss"] + (weight * 0).abs().sqrt().sum() * 0
        return output


class StateAfterStep(Callback):
    """Keeps copies of the model and optimizer states after each optimizer step."""

    def __init__(self) -> None:
        self.states: dict[int, tuple[dict, dict]] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        optimizer = trainer.optimizers[0].state_dict()["state"]
        self.states[trainer.global_step] = copy.deepcopy((pl_module.state_dict(), optimizer))


def fit(tmp_path, guard: DivergenceGuard, nan_steps=(), nan_gradient_steps=()):
    seed_everything(0)
    model = Breaks(
        backbone=ResNet(width=8, cifar_stem=True),
        proj_hidden_dim=32,
        proj_output_dim=16,
        pred_hidden_dim=32,
        rotation_hidden_dim=16,
    )
    model.nan_steps = frozenset(nan_steps)
    model.nan_gradient_steps = frozenset(nan_gradient_steps)
    data = SSLDataModule(Synthetic(size=48), batch_size=16, num_workers=0)
    states = StateAfterStep()
    trainer = Trainer(
        accelerator="cpu",
        max_steps=6,
        callbacks=[guard, states],
        logger=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
        limit_val_batches=0,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, data)
    return model, states.states


def assert_same(first: dict, second: dict) -> None:
    assert first.keys() == second.keys()
    for key in first:
        if isinstance(first[key], dict):
            assert_same(first[key], second[key])
        else:
            assert torch.equal(first[key], second[key]), key


def test_stop_saves_the_state_before_the_bad_step_and_names_the_nonfinite_terms(tmp_path):
    with pytest.raises(NonFiniteLossError) as error:
        fit(tmp_path, DivergenceGuard("stop"), nan_steps={4})
    message = str(error.value)
    assert "global step 4 (epoch 1, batch 1)" in message
    assert "train/rot_loss=nan" in message and "train/loss=nan" in message
    assert "train/ssl_loss" not in message
    saved = torch.load(
        tmp_path / "checkpoints" / "before-nonfinite-step=4.ckpt", weights_only=False
    )
    assert saved["global_step"] == 4
    # weights, EMA targets and the BatchNorm statistics the NaN forward pass had overwritten
    model_state, optimizer_state = fit(tmp_path / "reference", DivergenceGuard())[1][4]
    assert_same(saved["state_dict"], model_state)
    assert_same(saved["optimizer_states"][0]["state"], optimizer_state)


def test_stop_also_catches_nonfinite_gradients_of_a_finite_loss(tmp_path):
    with pytest.raises(NonFiniteLossError, match="global step 2 .*finite loss but non-finite"):
        fit(tmp_path, DivergenceGuard("stop"), nan_gradient_steps={2})
    assert (tmp_path / "checkpoints" / "before-nonfinite-step=2.ckpt").exists()


def test_skip_leaves_the_online_network_and_optimizer_as_they_were(tmp_path):
    guard = DivergenceGuard("skip")
    with pytest.warns(UserWarning, match="Skipped the optimizer step at global step 2 .*rot_loss"):
        model, states = fit(tmp_path, guard, nan_steps={2})
    assert guard.skipped_steps == 1 and guard.consecutive_skips == 0
    assert model.global_step == 6
    assert all(torch.isfinite(value).all() for value in model.state_dict().values())
    (before, optimizer_before), (after, optimizer_after) = states[2], states[3]
    online = {key: value for key, value in before.items() if not key.startswith("target_")}
    assert_same(online, {key: after[key] for key in online})
    assert_same(optimizer_before, optimizer_after)
    # the step still counts: the EMA targets moved towards the (unchanged) online network
    assert not torch.equal(before["target_projector.0.weight"], after["target_projector.0.weight"])


def test_skip_stops_after_too_many_bad_steps_in_a_row(tmp_path):
    guard = DivergenceGuard("skip", max_consecutive_skips=2)
    with pytest.warns(UserWarning), pytest.raises(NonFiniteLossError, match="global step 3"):
        fit(tmp_path, guard, nan_steps={1, 2, 3})
    assert guard.skipped_steps == 2


def test_disabled_guard_lets_the_nonfinite_step_through(tmp_path):
    # the opt-out for the last host sync of a step: nothing is checked, so NaN reaches the weights
    model, _ = fit(tmp_path, DivergenceGuard(enabled=False), nan_steps={2})
    assert model.global_step == 6
    assert not all(torch.isfinite(value).all() for value in model.state_dict().values())


class NaNViews:
    """Mixin: the views of the global steps in ``nan_steps`` turn NaN, so the online and target
    (or teacher) forward passes write NaN into every BatchNorm's running statistics and the
    method's queue or center update is NaN."""

    nan_steps: frozenset[int] = frozenset()

    def training_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        if self.global_step in self.nan_steps:
            batch["views"] = [view * float("nan") for view in batch["views"]]
        return super().training_step(batch, batch_idx)


class NaNMoCo(NaNViews, MoCoV2Plus):
    pass


class NaNDINO(NaNViews, DINO):
    pass


class NaNNNCLR(NaNViews, NNCLR):
    pass


def _tiny(cls: type, **options):
    sizes = {"proj_hidden_dim": 32, "proj_output_dim": 16, "rotation_hidden_dim": 16}
    if cls is NaNDINO:
        sizes["num_prototypes"] = 24
    if cls is NaNNNCLR:
        sizes["pred_hidden_dim"] = 32
    return cls(backbone=ResNet(width=8, cifar_stem=True), **sizes, **options)


def fit_method(tmp_path, model, guard: DivergenceGuard, max_steps: int = 4):
    seed_everything(0)
    data = SSLDataModule(Synthetic(size=48), batch_size=16, num_workers=0)
    states = StateAfterStep()
    trainer = Trainer(
        accelerator="cpu",
        max_steps=max_steps,
        callbacks=[guard, states],
        logger=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
        limit_val_batches=0,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, data)
    return states.states


@pytest.mark.parametrize(
    ("cls", "options", "staged"),
    [
        (NaNMoCo, {"queue_size": 64}, ("queues.0.", "queues.1.")),
        (NaNDINO, {}, ("dino_loss.center",)),
    ],
    ids=["mocov2plus-queues", "dino-center"],
)
def test_a_skipped_step_leaves_every_queue_center_and_batchnorm_buffer_bit_identical(
    tmp_path, cls, options, staged
):
    seed_everything(0)
    model = _tiny(cls, **options)
    model.nan_steps = frozenset({2})
    guard = DivergenceGuard("skip")
    with pytest.warns(UserWarning, match="Skipped the optimizer step at global step 2"):
        states = fit_method(tmp_path, model, guard)
    assert guard.skipped_steps == 1
    buffers = {name for name, _ in model.named_buffers()}
    (before, _), (after, _) = states[2], states[3]
    assert any(name.startswith(staged) for name in buffers)
    for name in buffers:
        assert torch.equal(before[name], after[name]), name
    # the steps before and after did change them: the comparison above is not vacuous
    (first, _), (last, _) = states[1], states[4]
    for prefix in staged:
        names = [name for name in buffers if name.startswith(prefix)]
        assert any(not torch.equal(first[name], before[name]) for name in names)
        assert any(not torch.equal(after[name], last[name]) for name in names)
    assert all(torch.isfinite(value).all() for value in model.state_dict().values())


def test_the_guard_copies_the_batchnorm_statistics_and_not_the_queue(tmp_path):
    seed_everything(0)
    model = _tiny(NaNNNCLR, queue_size=4096)
    guard = DivergenceGuard()
    fit_method(tmp_path, model, guard, max_steps=1)
    queue_bytes = sum(buffer.nbytes for buffer in model.support_set.buffers())
    written = [
        buffer for name, buffer in model.named_buffers() if not name.startswith("support_set.")
    ]
    assert queue_bytes == 4096 * 16 * 4 + 2 * 8
    # the running statistics and counters of every BatchNorm, nothing else
    assert guard.copied_bytes == sum(buffer.nbytes for buffer in written)
    for name, _ in model.named_buffers():
        if not name.startswith("support_set."):
            assert name.endswith(("running_mean", "running_var", "num_batches_tracked")), name
    assert guard.copied_bytes < queue_bytes / 10
